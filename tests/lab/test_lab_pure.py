"""Pure parts of the lab platform: image key, seed files, network plan."""

from __future__ import annotations

import ipaddress
from urllib.parse import parse_qs, urlsplit

import yaml
from hypothesis import given
from hypothesis import strategies as st

from lab import image
from lab import s3 as lab_s3
from lab.netns import LabNetwork
from lab.seed import PUBLIC_INTERFACE, VPC_INTERFACE, SeedSpec, meta_data, network_config
from provisioning.cloud_config import COMMON_PACKAGES, CONTROLLER_PACKAGES, WORKER_PACKAGES


def test_each_role_layer_holds_exactly_the_packages_its_cloud_config_installs() -> None:
    assert set(image.ROLE_PACKAGES["controller"]) == {*COMMON_PACKAGES, *CONTROLLER_PACKAGES}
    assert set(image.ROLE_PACKAGES["worker"]) == {*COMMON_PACKAGES, *WORKER_PACKAGES}
    spec = image.default_spec(image.Path(__file__).resolve().parents[2])
    for package in ("systemd", "dbus", "cloud-init", "locales", "iproute2"):
        assert package in spec.packages


def test_role_layer_key_follows_the_base_and_the_role() -> None:
    base = image.ImageSpec(packages=("a",), wheels=())
    other = image.ImageSpec(packages=("b",), wheels=())
    assert image.role_key(base, "worker") != image.role_key(base, "controller")
    assert image.role_key(base, "worker") != image.role_key(other, "worker")
    assert image.role_key(base, "worker") == image.role_key(base, "worker")


def test_image_key_changes_with_its_package_list_and_not_with_order() -> None:
    base = image.ImageSpec(packages=("a", "b"), wheels=("x==1",))
    assert base.key == image.ImageSpec(packages=("a", "b"), wheels=("x==1",)).key
    assert base.key != image.ImageSpec(packages=("a", "b", "c"), wheels=("x==1",)).key
    assert base.key != image.ImageSpec(packages=("a", "b"), wheels=("x==2",)).key


def test_app_requirements_reads_only_the_app_section() -> None:
    text = "# Engine\npulumi==1\n# Application (app/)\nDjango==5\n\nredis==8\n# Tests\npytest==9\n"
    assert image.app_requirements(text) == ("Django==5", "redis==8")


@given(
    st.integers(min_value=16, max_value=28), st.integers(0, 255), st.integers(0, 255),
    st.text(min_size=1),
)
def test_network_plan_addresses_lie_in_their_subnets(
    prefix: int, b: int, c: int, stack: str
) -> None:
    subnet = ipaddress.ip_network(f"10.{b}.{c}.0/{prefix}", strict=False)
    net = LabNetwork(stack=stack, vpc_subnet=str(subnet))
    assert ipaddress.ip_address(net.vpc_host(3)) in subnet
    assert ipaddress.ip_address(net.controller_public) in ipaddress.ip_network(net.public_subnet)
    assert net.gateway != net.controller_public
    # A network namespace name is a file name and an `ip` argument: short and plain.
    assert len(net.namespace) <= 20 and net.namespace.replace("-", "").isalnum()


def test_namespace_names_differ_between_stacks() -> None:
    assert LabNetwork("a", "10.0.0.0/24").namespace != LabNetwork("b", "10.0.0.0/24").namespace


def test_network_config_gives_the_vpc_address_statically_on_host0() -> None:
    spec = SeedSpec(instance_id="i-1", hostname="worker-0", vpc_address="10.20.0.10",
                    vpc_prefixlen=24)
    config = yaml.safe_load(network_config(spec))
    assert config == {
        "version": 2,
        "ethernets": {VPC_INTERFACE: {"match": {"name": VPC_INTERFACE},
                                      "addresses": ["10.20.0.10/24"]}},
    }


def test_network_config_adds_the_public_interface_with_its_gateway() -> None:
    spec = SeedSpec(instance_id="i-1", hostname="controller", vpc_address="10.20.0.3",
                    vpc_prefixlen=24, public_address="192.0.2.10", public_gateway="192.0.2.1")
    public = yaml.safe_load(network_config(spec))["ethernets"][PUBLIC_INTERFACE]
    assert public["addresses"] == ["192.0.2.10/24"]
    assert public["gateway4"] == "192.0.2.1"


def test_meta_data_carries_the_instance_id_and_keys() -> None:
    spec = SeedSpec(instance_id="i-abc", hostname="controller", vpc_address="10.20.0.3",
                    vpc_prefixlen=24, public_keys=("ssh-ed25519 AAAA k",))
    assert yaml.safe_load(meta_data(spec)) == {
        "instance-id": "i-abc", "local-hostname": "controller",
        "public-keys": ["ssh-ed25519 AAAA k"],
    }


@given(st.sampled_from(["10.20.0.0/24", "10.99.0.0/16", "172.16.5.0/28"]),
       st.text(alphabet="abcdef0123456789", min_size=4, max_size=20))
def test_the_labs_s3_answers_on_the_public_side_never_in_the_vpc(vpc: str, key: str) -> None:
    net = LabNetwork("s", vpc)
    server = lab_s3.plan(net, key, "secret")
    address = ipaddress.ip_address(server.address)
    assert address in ipaddress.ip_network(net.public_subnet)
    assert address not in ipaddress.ip_network(vpc)
    # Neither the operator's own address (the admin CIDR) nor the controller's.
    assert server.address not in (net.gateway, net.controller_public)


def test_the_labs_state_backend_is_prods_login_with_plain_http() -> None:
    server = lab_s3.plan(LabNetwork("s", "10.20.0.0/24"), "AK", "SK")
    url = urlsplit(server.backend_url)
    query = parse_qs(url.query)
    assert (url.scheme, url.netloc) == ("s3", lab_s3.STATE_BUCKET)
    # As docs/prod.md's `pulumi login 's3://...?endpoint=...&s3ForcePathStyle=true'`.
    assert query["endpoint"] == ["192.0.2.2:9000"] and query["s3ForcePathStyle"] == ["true"]
    assert query["disable_https"] == ["true"]
    env = server.backend_env()
    assert env["PULUMI_BACKEND_URL"] == server.backend_url
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == ("AK", "SK")
    assert env["AWS_REGION"] == server.region
    described = server.description()
    assert described["s3Endpoint"] == "http://192.0.2.2:9000"
    assert described["s3Hostname"] == "192.0.2.2:9000"
    assert described["mediaBucket"] == lab_s3.MEDIA_BUCKET != lab_s3.STATE_BUCKET
