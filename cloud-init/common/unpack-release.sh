# unpack_release COMMAND BUNDLE SHA256 RELEASES KIND PYTHON VENV: check BUNDLE's sha256, unpack
# it into its own release RELEASES/<content hash> (its name without KIND) and build the
# virtualenv RELEASES/<hash>/VENV from the bundle's wheels with --no-index: no package index is
# needed. A release is installed once; sets `release` to its directory.
# (Included by gemnar-install-app and gemnar-install-ops: one bundle layout, one installer.)
unpack_release() {
    local command=$1 bundle=$2 expected=$3 releases=$4 kind=$5 python=$6 venv=$7 actual name
    actual="$(sha256sum "$bundle" | cut -d' ' -f1)"
    if [ "$actual" != "$expected" ]; then
        echo "$command: $bundle has sha256 $actual, expected $expected" >&2
        exit 1
    fi
    name="$(basename "$bundle" .tar.gz)"
    release="$releases/${name#"$kind"}"
    if [ ! -e "$release/.installed" ]; then
        rm -rf "$release"
        install -d -m 0755 "$release"
        tar -xzf "$bundle" -C "$release" --no-same-owner
        "$python" -m venv "$release/$venv"
        "$release/$venv/bin/pip" install --quiet --disable-pip-version-check --no-index \
            --find-links "$release/wheels" -r "$release/requirements.txt"
        touch "$release/.installed"
    fi
}
