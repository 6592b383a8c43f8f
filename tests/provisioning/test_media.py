"""Where media live, as data, and the controller's ``/media/`` rendered for each place: the
pure parts as tables, and every variant through ``nginx -t``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from provisioning.media import (
    HIDDEN_HEADERS,
    KEY_PATTERN,
    MediaBucket,
    MediaDirectory,
    MediaStore,
    render_nginx_media,
)
from tests.provisioning.combos import CONTROLLERS
from tests.support import daemons

SETTINGS = CONTROLLERS["prod-default"]
BUCKET = "gemnar-media-0123456789abcdef"
STORES: dict[str, MediaStore] = {
    "pending": None,
    "directory": MediaDirectory("/srv/gemnar/media"),
    "bucket-by-name": MediaBucket("https://ams1.vultrobjects.com", BUCKET),
    "bucket-by-address": MediaBucket("http://192.0.2.2:9000", BUCKET),
}


@pytest.mark.parametrize(("endpoint", "bucket"), [
    ("ams1.vultrobjects.com", BUCKET),            # no scheme
    ("ftp://ams1.vultrobjects.com", BUCKET),
    ("https://ams1.vultrobjects.com/path", BUCKET),
    ("https://user@ams1.vultrobjects.com", BUCKET),
    ("https://ams1.vultrobjects.com", "Upper"),
    ("https://ams1.vultrobjects.com", "a"),
    ("https://ams1.vultrobjects.com", "bad;name"),
])
def test_bad_buckets_are_refused(endpoint: str, bucket: str) -> None:
    with pytest.raises(ValueError):
        MediaBucket(endpoint, bucket)


@pytest.mark.parametrize(("endpoint", "by_name", "host"), [
    ("https://ams1.vultrobjects.com", True, "ams1.vultrobjects.com"),
    ("http://192.0.2.2:9000", False, "192.0.2.2:9000"),
    ("http://localhost:9000", True, "localhost:9000"),
    ("http://[::1]:9000", False, "[::1]:9000"),
])
def test_host_and_how_it_is_found(endpoint: str, by_name: bool, host: str) -> None:
    bucket = MediaBucket(endpoint, BUCKET)
    assert (bucket.by_name, bucket.host) == (by_name, host)
    conf = render_nginx_media(bucket, SETTINGS)
    assert f"proxy_set_header Host {host};" in conf
    # A name is resolved per request through the local resolver; an address is used as is.
    assert ("resolver 127.0.0.1" in conf) is by_name
    assert ("proxy_pass $gemnar_media_origin;" in conf) is by_name


@pytest.mark.parametrize(("key", "matches"), [
    ("uploads/0123456789abcdef0123456789abcdef.png", True),
    ("a", True),
    ("", False),                      # the bucket itself: its listing
    (".hidden", False),
    ("uploads/x y.png", False),
    ("uploads/x%2F..png", False),
    ("a" * 1024, True),
    ("a" * 1025, False),
])
def test_object_names_nginx_forwards(key: str, matches: bool) -> None:
    assert bool(re.fullmatch(KEY_PATTERN, key)) is matches


def test_the_bucket_location_refuses_what_is_not_a_read() -> None:
    conf = render_nginx_media(STORES["bucket-by-name"], SETTINGS)
    assert "if ($request_method !~ ^(GET|HEAD)$) {" in conf and "return 405;" in conf
    assert f"/{BUCKET}/$1? break;" in conf
    assert "proxy_pass_request_headers off;" in conf and "proxy_bind off;" in conf
    assert "proxy_ssl_verify on;" in conf and "proxy_ssl_name ams1.vultrobjects.com;" in conf
    for name in HIDDEN_HEADERS:
        assert f"proxy_hide_header {name};" in conf
    # Plain HTTP (a lab or test server by address): no TLS directives at all.
    assert "proxy_ssl" not in render_nginx_media(STORES["bucket-by-address"], SETTINGS)


@pytest.mark.parametrize("store", sorted(STORES))
def test_nginx_accepts_every_media_location(store: str, tmp_path: Path) -> None:
    settings = daemons.loopback_controller_settings(tmp_path)
    conf = daemons.prepare_nginx(settings)
    # What cloud-init (pending), the local node (directory) or the deploy (bucket) writes.
    Path(settings.paths.nginx_media_file).write_text(render_nginx_media(STORES[store], settings))
    result = daemons.nginx_test(conf, settings.paths.nginx_error_log)
    assert result.returncode == 0, result.stderr
