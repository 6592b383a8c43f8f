"""App delivery for ``appSource: bundled``: a self-contained artifact, pushed over SSH.

``source`` names what goes in and its content hash (pure, no network: previews stay offline);
``artifact`` builds the tarball (app tree + pinned dependency wheels) once per hash;
``push`` copies it to a node over SSH (workers through the controller) and installs it there
with the rendered ``gemnar-install-app``, which needs no package index.
"""
