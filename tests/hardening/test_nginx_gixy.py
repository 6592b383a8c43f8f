"""gixy (``gixy-ng``) finds nothing in the controller's Nginx config, prod and local renders.

Before the hardening issue: 3 MEDIUM findings on every render (``weak_ssl_tls``,
``host_spoofing``, ``worker_rlimit_nofile_vs_connections``). Target: 0.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioning.media import MediaBucket, MediaDirectory, MediaStore, render_nginx_media
from provisioning.nginx import render_nginx_conf, render_nginx_upstream
from provisioning.settings import ControllerSettings
from tests.provisioning.combos import CONTROLLERS
from tests.support.tooling import require_executable

VENV_BIN = str(Path(__file__).resolve().parents[2] / ".venv" / "bin")


@dataclass(frozen=True)
class Member:
    address: str
    healthy: bool


# Where /media/ reads from: before the deploy, a shared directory (local), the media bucket
# on Vultr (TLS, by name) and a plain-HTTP S3 server by address (the lab's, the tests').
MEDIA: dict[str, MediaStore] = {
    "pending": None,
    "directory": MediaDirectory("/srv/gemnar/media"),
    "bucket-https": MediaBucket("https://ams1.vultrobjects.com", "gemnar-media-0123456789abcdef"),
    "bucket-http": MediaBucket("http://10.20.0.2:8333", "gemnar-media-0123456789abcdef"),
}


def gixy_findings(settings: ControllerSettings, root: Path,
                  media: MediaStore = MEDIA["bucket-https"]) -> list[dict[str, object]]:
    """gixy's findings on ``settings``' nginx.conf with its upstream and media files beside it."""
    settings = settings.with_paths_under(root)
    upstream = Path(settings.paths.nginx_upstream_file)
    upstream.parent.mkdir(parents=True, exist_ok=True)
    upstream.write_text(render_nginx_upstream([Member("10.20.0.5:8000", True)], settings))
    Path(settings.paths.nginx_media_file).write_text(render_nginx_media(media, settings))
    conf = Path(settings.paths.nginx_conf_file)
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(render_nginx_conf(settings))
    gixy = require_executable("gixy", VENV_BIN)
    result = subprocess.run([str(gixy), "-f", "json", str(conf)],
                            capture_output=True, text=True, check=False)
    findings: list[dict[str, object]] = json.loads(result.stdout)
    return findings


@pytest.mark.parametrize("name", sorted(CONTROLLERS))
def test_gixy_finds_nothing(name: str, tmp_path: Path) -> None:
    findings = gixy_findings(CONTROLLERS[name], tmp_path)
    assert findings == [], [(f["plugin"], f["summary"]) for f in findings]


@pytest.mark.parametrize("media", sorted(MEDIA))
def test_gixy_finds_nothing_in_any_media_location(media: str, tmp_path: Path) -> None:
    settings = CONTROLLERS["prod-default"]
    findings = gixy_findings(settings, tmp_path, MEDIA[media])
    assert findings == [], [(f["plugin"], f["summary"]) for f in findings]
    # gixy read the included file (its directives are in what it parsed).
    text = Path(settings.with_paths_under(tmp_path).paths.nginx_media_file).read_text()
    assert "location /media/" in text


def test_gixy_still_reports_what_it_reported_before(tmp_path: Path) -> None:
    """The checker is live: the old Host forwarding comes back as host_spoofing."""
    settings = CONTROLLERS["prod-default"].with_paths_under(tmp_path)
    findings = gixy_findings(settings, tmp_path)
    assert findings == []
    conf = Path(settings.paths.nginx_conf_file)
    conf.write_text(conf.read_text().replace("proxy_set_header Host $host;",
                                             "proxy_set_header Host $http_host;"))
    gixy = require_executable("gixy", VENV_BIN)
    result = subprocess.run([str(gixy), "-f", "json", str(conf)],
                            capture_output=True, text=True, check=False)
    assert {f["plugin"] for f in json.loads(result.stdout)} == {"host_spoofing"}
