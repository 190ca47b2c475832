"""In-process compute API tests (both databases) for flavors, keypairs, quotas and limits,
availability zones, hypervisors, services, aggregates and server groups. Every successful
response is checked against Tempest's schema for the microversion asked for."""

from __future__ import annotations

import base64
import hashlib
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from nova_checks import fault, valid
from tempest.lib.api_schema.response.compute.v2_1 import aggregates as aggregates21
from tempest.lib.api_schema.response.compute.v2_1 import availability_zone as az21
from tempest.lib.api_schema.response.compute.v2_1 import flavors as flavors21
from tempest.lib.api_schema.response.compute.v2_1 import flavors_access as access21
from tempest.lib.api_schema.response.compute.v2_1 import flavors_extra_specs as specs21
from tempest.lib.api_schema.response.compute.v2_1 import hypervisors as hyper21
from tempest.lib.api_schema.response.compute.v2_1 import keypairs as keypairs21
from tempest.lib.api_schema.response.compute.v2_1 import limits as limits21
from tempest.lib.api_schema.response.compute.v2_1 import quota_classes as classes21
from tempest.lib.api_schema.response.compute.v2_1 import quotas as quotas21
from tempest.lib.api_schema.response.compute.v2_1 import server_groups as groups21
from tempest.lib.api_schema.response.compute.v2_1 import services as services21
from tempest.lib.api_schema.response.compute.v2_2 import keypairs as keypairs22
from tempest.lib.api_schema.response.compute.v2_11 import services as services211
from tempest.lib.api_schema.response.compute.v2_13 import server_groups as groups213
from tempest.lib.api_schema.response.compute.v2_28 import hypervisors as hyper228
from tempest.lib.api_schema.response.compute.v2_33 import hypervisors as hyper233
from tempest.lib.api_schema.response.compute.v2_36 import limits as limits236
from tempest.lib.api_schema.response.compute.v2_36 import quotas as quotas236

from conftest import Api
from picocloud.compute import hosts, quota
from picocloud.compute.flavors_seed import seed_flavors
from picocloud.compute.models import Host, Server
from picocloud.compute.virt.base import HostInfo
from picocloud.errors import Forbidden

C = "/compute/v2.1"


def mv(version: str) -> dict[str, str]:
    return {"OpenStack-API-Version": f"compute {version}"}




@pytest.fixture
def seeded(api: Api) -> None:
    with api.cloud.session() as db:
        seed_flavors(db)
        db.commit()


INFO = HostInfo(hostname="node1", vcpus=8, memory_mb=16384, disk_gb=100, accel="tcg",
                hypervisor_type="QEMU", hypervisor_version=7002000,
                cpu_info={"arch": "x86_64", "model": "max"})


def add_server(api: Api, project_id: str, user_id: str, host: str | None = None,
               vcpus: int = 1, ram: int = 128) -> str:
    server_id = str(uuid.uuid4())
    now = hosts.utcnow()
    with api.cloud.session() as db:
        db.add(Server(
            id=server_id, name="s", project_id=project_id, user_id=user_id, image_id="i",
            flavor_id="42", flavor={"vcpus": vcpus, "ram": ram, "disk": 1}, metadata_={},
            vm_state="active", power_state=1, locked=False, reservation_id="r-1",
            launch_index=0, access_ipv4="", access_ipv6="", networks="none",
            security_groups=[], deleted=False, config_drive=False, host=host,
            created_at=now, updated_at=now,
        ))
        db.commit()
    return server_id


# -- flavors ---------------------------------------------------------------------------------
def test_flavor_lists_per_microversion(api: Api, admin_token: str, seeded: None) -> None:
    r = api.get(f"{C}/flavors/detail", admin_token, headers=mv("2.38"))
    assert r.headers["openstack-api-version"] == "compute 2.38"
    assert "OpenStack-API-Version" in r.headers["vary"]
    flavors = valid(flavors21.list_flavors_details, r)["flavors"]
    by_name = {f["name"]: f for f in flavors}
    assert {"m1.tiny", "m1.small", "m1.medium", "m1.large", "m1.xlarge", "p1.tiny",
            "p1.small"} <= set(by_name)
    tiny = by_name["p1.tiny"]
    assert (tiny["id"], tiny["vcpus"], tiny["ram"], tiny["disk"]) == ("42", 1, 128, 1)
    assert tiny["swap"] == "" and tiny["os-flavor-access:is_public"] is True
    valid(flavors21.list_flavors, api.get(f"{C}/flavors", admin_token))
    r = api.get(f"{C}/flavors/detail?minRam=4096&minDisk=40", admin_token)
    assert {f["name"] for f in r.json()["flavors"]} == {"m1.medium", "m1.large", "m1.xlarge"}
    r = api.get(f"{C}/flavors?sort_key=memory_mb&sort_dir=desc", admin_token)
    assert r.json()["flavors"][0]["name"] == "m1.xlarge"
    r = api.get(f"{C}/flavors?limit=2", admin_token)
    page = valid(flavors21.list_flavors, r)
    assert [f["id"] for f in page["flavors"]] == ["1", "2"]
    nxt = page["flavors_links"][0]["href"]
    assert "marker=2" in nxt and nxt.startswith("http")
    r = api.get(f"{C}/flavors?marker=2&limit=1", admin_token)
    assert [f["id"] for f in r.json()["flavors"]] == ["3"]
    assert "not found" in fault(api.get(f"{C}/flavors?marker=nope", admin_token), 400,
                                "badRequest")
    fault(api.get(f"{C}/flavors?sort_key=bogus", admin_token), 400, "badRequest")
    fault(api.get(f"{C}/flavors?is_public=maybe", admin_token), 400, "badRequest")
    fault(api.get(f"{C}/flavors/nope", admin_token), 404, "itemNotFound")
    with api.cloud.session() as db:
        assert seed_flavors(db) == []  # idempotent


def test_flavor_create_delete_and_private_access(api: Api, admin_token: str) -> None:
    member, project_id, _ = api.member(admin_token, "fl")
    body = {"flavor": {"name": "m1.nano", "vcpus": 1, "ram": 128, "disk": 1, "id": None,
                       "OS-FLV-EXT-DATA:ephemeral": 0, "swap": 0, "rxtx_factor": 1.0,
                       "os-flavor-access:is_public": True}}
    r = api.post(f"{C}/flavors", member, json=body)
    fault(r, 403, "forbidden")
    r = api.post(f"{C}/flavors", admin_token, json=body, headers=mv("2.38"))
    nano = valid(flavors21.create_update_get_flavor_details, r)["flavor"]
    assert str(uuid.UUID(nano["id"])) == nano["id"]
    assert "already exists" in fault(api.post(f"{C}/flavors", admin_token, json=body), 409,
                                     "conflictingRequest")
    r = api.post(f"{C}/flavors", admin_token, json={"flavor": {
        "name": "big", "vcpus": "2", "ram": "1024", "disk": 5, "id": 1234, "swap": 512,
        "rxtx_factor": 2}})
    big = valid(flavors21.create_update_get_flavor_details, r)["flavor"]
    assert (big["id"], big["ram"], big["swap"], big["rxtx_factor"]) == ("1234", 1024, 512, 2.0)
    bad = {"name": "x", "vcpus": 0, "ram": 1, "disk": 1}
    assert "vcpus" in fault(api.post(f"{C}/flavors", admin_token, json={"flavor": bad}), 400,
                            "badRequest")
    extra = {"name": "x", "vcpus": 1, "ram": 1, "disk": 1, "description": "d"}
    fault(api.post(f"{C}/flavors", admin_token, json={"flavor": extra}), 400, "badRequest")
    fault(api.post(f"{C}/flavors", admin_token, json={"flavor": {
        "name": " lead", "vcpus": 1, "ram": 1, "disk": 1}}), 400, "badRequest")
    # a private flavor: hidden from the member until their project gets access
    r = api.post(f"{C}/flavors", admin_token, json={"flavor": {
        "name": "secret", "vcpus": 1, "ram": 64, "disk": 1, "id": "sec",
        "os-flavor-access:is_public": "False"}})
    assert r.json()["flavor"]["os-flavor-access:is_public"] is False
    assert "secret" not in {f["name"] for f in api.get(f"{C}/flavors", member).json()["flavors"]}
    fault(api.get(f"{C}/flavors/sec", member), 404, "itemNotFound")
    r = api.get(f"{C}/flavors/detail?is_public=None", admin_token)
    assert "secret" in {f["name"] for f in r.json()["flavors"]}
    r = api.get(f"{C}/flavors/detail?is_public=false", admin_token)
    assert {f["name"] for f in r.json()["flavors"]} == {"secret"}
    assert valid(access21.add_remove_list_flavor_access,
                 api.get(f"{C}/flavors/sec/os-flavor-access", admin_token)) == {
        "flavor_access": []}
    add = {"addTenantAccess": {"tenant": project_id}}
    fault(api.post(f"{C}/flavors/sec/action", member, json=add), 403, "forbidden")
    r = api.post(f"{C}/flavors/sec/action", admin_token, json=add)
    assert valid(access21.add_remove_list_flavor_access, r)["flavor_access"] == [
        {"flavor_id": "sec", "tenant_id": project_id}]
    fault(api.post(f"{C}/flavors/sec/action", admin_token, json=add), 409, "conflictingRequest")
    fault(api.post(f"{C}/flavors/sec/action", admin_token,
                   json={"addTenantAccess": {"tenant": "no-such-project"}}), 400, "badRequest")
    assert api.get(f"{C}/flavors/sec", member).status_code == 200
    assert "secret" in {f["name"] for f in api.get(f"{C}/flavors", member).json()["flavors"]}
    fault(api.get(f"{C}/flavors/1234/os-flavor-access", admin_token), 404, "itemNotFound")
    r = api.post(f"{C}/flavors/sec/action", admin_token,
                 json={"removeTenantAccess": {"tenant": project_id}})
    assert valid(access21.add_remove_list_flavor_access, r)["flavor_access"] == []
    fault(api.post(f"{C}/flavors/sec/action", admin_token,
                   json={"removeTenantAccess": {"tenant": project_id}}), 404, "itemNotFound")
    fault(api.request("DELETE", f"{C}/flavors/1234", member), 403, "forbidden")
    valid(flavors21.delete_flavor, api.request("DELETE", f"{C}/flavors/1234", admin_token))
    fault(api.get(f"{C}/flavors/1234", admin_token), 404, "itemNotFound")


def test_flavor_extra_specs(api: Api, admin_token: str, seeded: None) -> None:
    member, _, _ = api.member(admin_token, "es")
    specs = {"hw:cpu_policy": "shared", "hw:numa_nodes": "1"}
    r = api.post(f"{C}/flavors/42/os-extra_specs", admin_token, json={"extra_specs": specs})
    assert valid(specs21.set_get_flavor_extra_specs, r) == {"extra_specs": specs}
    fault(api.post(f"{C}/flavors/42/os-extra_specs", member, json={"extra_specs": specs}),
          403, "forbidden")
    r = api.get(f"{C}/flavors/42/os-extra_specs", member)
    assert valid(specs21.set_get_flavor_extra_specs, r)["extra_specs"] == specs
    r = api.get(f"{C}/flavors/42/os-extra_specs/hw:numa_nodes", member)
    assert valid(specs21.set_get_flavor_extra_specs_key, r) == {"hw:numa_nodes": "1"}
    r = api.request("PUT", f"{C}/flavors/42/os-extra_specs/hw:numa_nodes", admin_token,
                    json={"hw:numa_nodes": "2"})
    assert valid(specs21.set_get_flavor_extra_specs_key, r) == {"hw:numa_nodes": "2"}
    fault(api.request("PUT", f"{C}/flavors/42/os-extra_specs/hw:numa_nodes", admin_token,
                      json={"hw:cpu_policy": "x"}), 400, "badRequest")
    fault(api.request("PUT", f"{C}/flavors/42/os-extra_specs/hw:numa_nodes", admin_token,
                      json={"hw:numa_nodes": "1", "a": "b"}), 400, "badRequest")
    fault(api.post(f"{C}/flavors/42/os-extra_specs", admin_token,
                   json={"extra_specs": {"bad/key": "x"}}), 400, "badRequest")
    r = api.request("DELETE", f"{C}/flavors/42/os-extra_specs/hw:numa_nodes", admin_token)
    valid(specs21.unset_flavor_extra_specs, r)
    fault(api.request("DELETE", f"{C}/flavors/42/os-extra_specs/hw:numa_nodes", admin_token),
          404, "itemNotFound")
    fault(api.get(f"{C}/flavors/42/os-extra_specs/nope", member), 404, "itemNotFound")


# -- keypairs --------------------------------------------------------------------------------
def openssh(key: Any) -> str:
    return key.public_key().public_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def md5_of(line: str) -> str:
    digest = hashlib.md5(base64.b64decode(line.split()[1])).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, 32, 2))


def test_keypair_import_generate_and_versions(api: Api, admin_token: str) -> None:
    keys = {
        "ed": openssh(ed25519.Ed25519PrivateKey.generate()) + " alice@laptop",
        "rsa": openssh(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "ec": openssh(ec.generate_private_key(ec.SECP256R1())),
    }
    for name, line in keys.items():
        r = api.post(f"{C}/os-keypairs", admin_token, headers=mv("2.2"),
                     json={"keypair": {"name": name, "public_key": line}})
        kp = valid(keypairs22.create_keypair, r)["keypair"]
        assert kp["fingerprint"] == md5_of(line) and kp["type"] == "ssh"
        assert "private_key" not in kp
    r = api.post(f"{C}/os-keypairs", admin_token, json={"keypair": {"name": "gen"}})
    gen = valid(keypairs21.create_keypair, r)["keypair"]  # 2.1: 200, no type
    assert gen["private_key"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert gen["fingerprint"] == md5_of(gen["public_key"])
    r = api.post(f"{C}/os-keypairs", admin_token, headers=mv("2.2"),
                 json={"keypair": {"name": "cert", "type": "x509"}})
    cert = valid(keypairs22.create_keypair, r)["keypair"]
    assert cert["type"] == "x509" and "BEGIN CERTIFICATE" in cert["public_key"]
    fault(api.post(f"{C}/os-keypairs", admin_token, json={"keypair": {"name": "t",
                                                                       "type": "ssh"}}),
          400, "badRequest")  # type is 2.2+
    for bad in ("ssh-rsa JUNK nova@ubuntu", " ", "ssh-rsa " + "A" * 2048,
                "ssh-ed25519 " + keys["rsa"].split()[1]):
        r = api.post(f"{C}/os-keypairs", admin_token,
                     json={"keypair": {"name": "bad", "public_key": bad}})
        assert "Keypair data is invalid" in fault(r, 400, "badRequest")
    for name in ("", "x" * 256, r"key_/.\@:"):
        fault(api.post(f"{C}/os-keypairs", admin_token, json={"keypair": {"name": name}}),
              400, "badRequest")
    r = api.post(f"{C}/os-keypairs", admin_token,
                 json={"keypair": {"name": "ed", "public_key": keys["ed"]}})
    assert "already exists" in fault(r, 409, "conflictingRequest")
    listed = valid(keypairs22.list_keypairs, api.get(f"{C}/os-keypairs", admin_token,
                                                     headers=mv("2.2")))["keypairs"]
    assert [k["keypair"]["name"] for k in listed] == ["cert", "ec", "ed", "gen", "rsa"]
    valid(keypairs21.list_keypairs, api.get(f"{C}/os-keypairs", admin_token))
    shown = valid(keypairs22.get_keypair, api.get(f"{C}/os-keypairs/ed", admin_token,
                                                  headers=mv("2.2")))["keypair"]
    assert shown["public_key"] == keys["ed"] and shown["deleted"] is False
    valid(keypairs21.get_keypair, api.get(f"{C}/os-keypairs/ed", admin_token))
    r = api.get(f"{C}/os-keypairs?limit=2", admin_token, headers=mv("2.35"))
    page = r.json()
    assert [k["keypair"]["name"] for k in page["keypairs"]] == ["cert", "ec"]
    assert "marker=ec" in page["keypairs_links"][0]["href"]
    r = api.get(f"{C}/os-keypairs?limit=2&marker=ec", admin_token, headers=mv("2.35"))
    assert [k["keypair"]["name"] for k in r.json()["keypairs"]] == ["ed", "gen"]
    valid(keypairs21.delete_keypair, api.request("DELETE", f"{C}/os-keypairs/gen", admin_token))
    valid(keypairs22.delete_keypair, api.request("DELETE", f"{C}/os-keypairs/rsa", admin_token,
                                                 headers=mv("2.2")))
    fault(api.request("DELETE", f"{C}/os-keypairs/rsa", admin_token), 404, "itemNotFound")


def test_keypairs_belong_to_their_user(api: Api, admin_token: str) -> None:
    member, project_id, user_id = api.member(admin_token, "kp")
    line = openssh(ed25519.Ed25519PrivateKey.generate())
    api.post(f"{C}/os-keypairs", admin_token, json={"keypair": {"name": "adm", "public_key": line}})
    r = api.post(f"{C}/os-keypairs", member, json={"keypair": {"name": "mine",
                                                                "public_key": line}})
    assert r.status_code == 200 and r.json()["keypair"]["user_id"] == user_id
    assert [k["keypair"]["name"] for k in api.get(f"{C}/os-keypairs", member).json()[
        "keypairs"]] == ["mine"]
    fault(api.get(f"{C}/os-keypairs/adm", member), 404, "itemNotFound")
    admin_id = api.get(f"{C}/os-keypairs/adm", admin_token).json()["keypair"]["user_id"]
    fault(api.get(f"{C}/os-keypairs?user_id={admin_id}", member, headers=mv("2.10")), 403,
          "forbidden")
    r = api.get(f"{C}/os-keypairs?user_id={user_id}", admin_token, headers=mv("2.10"))
    assert [k["keypair"]["name"] for k in r.json()["keypairs"]] == ["mine"]
    r = api.post(f"{C}/os-keypairs", admin_token, headers=mv("2.10"),
                 json={"keypair": {"name": "given", "public_key": line, "user_id": user_id}})
    assert r.status_code == 201 and r.json()["keypair"]["user_id"] == user_id
    r = api.get(f"{C}/os-keypairs/given?user_id={user_id}", admin_token, headers=mv("2.10"))
    assert r.json()["keypair"]["user_id"] == user_id
    # the key_pairs quota is per user
    r = api.request("PUT", f"{C}/os-quota-sets/{project_id}", admin_token,
                    json={"quota_set": {"key_pairs": 2}})
    assert r.status_code == 200, r.text
    r = api.post(f"{C}/os-keypairs", member, json={"keypair": {"name": "third",
                                                                "public_key": line}})
    assert "key pairs" in fault(r, 403, "forbidden")


# -- quotas and limits ----------------------------------------------------------------------
def test_quota_sets_per_microversion(api: Api, admin_token: str) -> None:
    member, project_id, user_id = api.member(admin_token, "qs")
    q = f"{C}/os-quota-sets/{project_id}"
    shown = valid(quotas21.get_quota_set, api.get(q, member))["quota_set"]
    assert shown["id"] == project_id and shown["instances"] == 10 and shown["cores"] == 20
    assert shown["floating_ips"] == 10 and shown["fixed_ips"] == -1
    shown = valid(quotas236.get_quota_set, api.get(q, member, headers=mv("2.36")))["quota_set"]
    assert "floating_ips" not in shown
    assert valid(quotas21.get_quota_set, api.get(f"{q}/defaults", member))["quota_set"][
        "ram"] == 51200
    fault(api.request("PUT", q, member, json={"quota_set": {"ram": 0}}), 403, "forbidden")
    other, _, _ = api.member(admin_token, "qs2")
    fault(api.get(q, other), 403, "forbidden")
    add_server(api, project_id, user_id, vcpus=4, ram=2048)
    r = api.request("PUT", q, admin_token, json={"quota_set": {"cores": 2}})
    assert "already used and reserved 4" in fault(r, 400, "badRequest")
    r = api.request("PUT", q, admin_token, headers=mv("2.36"),
                    json={"quota_set": {"cores": "8", "ram": 4096, "force": True}})
    body = valid(quotas236.update_quota_set, r)["quota_set"]
    assert (body["cores"], body["ram"]) == (8, 4096)
    fault(api.request("PUT", q, admin_token, headers=mv("2.36"),
                      json={"quota_set": {"floating_ips": 1}}), 400, "badRequest")
    valid(quotas21.update_quota_set, api.request("PUT", q, admin_token,
                                                 json={"quota_set": {"floating_ips": 1}}))
    detail = valid(quotas21.get_quota_set_details, api.get(f"{q}/detail", member))["quota_set"]
    assert detail["cores"] == {"limit": 8, "in_use": 4, "reserved": 0}
    assert detail["instances"]["in_use"] == 1
    # per-user limits, no higher than the project's
    r = api.request("PUT", f"{q}?user_id={user_id}", admin_token,
                    json={"quota_set": {"ram": 9999}})
    assert "less than or equal to 4096" in fault(r, 400, "badRequest")
    r = api.request("PUT", f"{q}?user_id={user_id}", admin_token,
                    json={"quota_set": {"ram": 3000}})
    assert r.json()["quota_set"]["ram"] == 3000
    assert api.get(f"{q}?user_id={user_id}", member).json()["quota_set"]["ram"] == 3000
    assert api.get(q, member).json()["quota_set"]["ram"] == 4096
    valid(quotas21.delete_quota, api.request("DELETE", q, admin_token))
    assert api.get(q, member).json()["quota_set"]["ram"] == 51200
    assert api.get(f"{q}?user_id={user_id}", member).json()["quota_set"]["ram"] == 51200
    r = api.get(f"{C}/os-quota-sets/not-a-project", admin_token)
    assert "not a valid project" in fault(r, 400, "badRequest")


def test_quota_class_default_changes_every_project(api: Api, admin_token: str) -> None:
    member, project_id, _ = api.member(admin_token, "qc")
    r = api.get(f"{C}/os-quota-class-sets/default", admin_token)
    assert valid(classes21.get_quota_class_set, r)["quota_class_set"]["instances"] == 10
    fault(api.request("PUT", f"{C}/os-quota-class-sets/default", member,
                      json={"quota_class_set": {"instances": 50}}), 403, "forbidden")
    r = api.request("PUT", f"{C}/os-quota-class-sets/default", admin_token,
                    json={"quota_class_set": {"instances": 50}})
    assert valid(classes21.update_quota_class_set, r)["quota_class_set"]["instances"] == 50
    r = api.get(f"{C}/os-quota-sets/{project_id}", member)
    assert r.json()["quota_set"]["instances"] == 50
    fault(api.request("PUT", f"{C}/os-quota-class-sets/{'c' * 80}", admin_token,
                      json={"quota_class_set": {"instances": 5}}), 400, "badRequest")


def test_limits(api: Api, admin_token: str) -> None:
    member, project_id, user_id = api.member(admin_token, "lim")
    add_server(api, project_id, user_id, vcpus=2, ram=512)
    r = api.get(f"{C}/limits", member)
    absolute = valid(limits21.get_limit, r)["limits"]["absolute"]
    assert (absolute["totalInstancesUsed"], absolute["totalCoresUsed"],
            absolute["totalRAMUsed"]) == (1, 2, 512)
    assert absolute["maxTotalInstances"] == 10 and absolute["maxServerMeta"] == 128
    assert r.json()["limits"]["rate"] == []
    absolute = valid(limits236.get_limit, api.get(f"{C}/limits", member,
                                                  headers=mv("2.36")))["limits"]["absolute"]
    assert "maxTotalFloatingIps" not in absolute
    r = api.get(f"{C}/limits?tenant_id={project_id}", admin_token)
    assert r.json()["limits"]["absolute"]["totalInstancesUsed"] == 1
    admin_project = api.get("/identity/v3/auth/tokens", admin_token, headers={
        "X-Subject-Token": admin_token}).json()["token"]["project"]["id"]
    fault(api.get(f"{C}/limits?tenant_id={admin_project}", member), 403, "forbidden")


def test_quota_check_message_and_concurrent_creates(api: Api, admin_token: str) -> None:
    _, project_id, user_id = api.member(admin_token, "qk")
    add_server(api, project_id, user_id, vcpus=19, ram=128)
    with api.cloud.session() as db:
        with pytest.raises(Forbidden) as err:
            quota.check(db, project_id, user_id, {"instances": 1, "cores": 2, "ram": 64})
        assert err.value.message == (
            "Quota exceeded for cores: Requested 2, but already used 19 of 20 cores")
        with pytest.raises(Forbidden) as err:
            quota.check(db, project_id, user_id, {"metadata_items": 129})
        quota.check(db, project_id, user_id, {"instances": 1, "cores": 1})
        db.rollback()
        quota.set_limits(db, project_id, {"instances": 2, "cores": -1})
        db.commit()
        assert quota.limits(db, project_id)["cores"] == -1
        assert quota.usage(db, project_id)["instances"] == 1
    # Two creates racing for the last instance: check, insert, (slow), commit. The quota lock
    # makes the second wait and then count the first one's row: exactly one gets through.
    outcomes: list[str] = []

    def create() -> None:
        with api.cloud.session() as db:
            try:
                quota.check(db, project_id, user_id, {"instances": 1})
            except Forbidden:
                outcomes.append("refused")
                db.rollback()
                return
            now = hosts.utcnow()
            db.add(Server(
                id=str(uuid.uuid4()), name="r", project_id=project_id, user_id=user_id,
                image_id="i", flavor_id="1", flavor={"vcpus": 1, "ram": 1}, metadata_={},
                vm_state="building", power_state=0, locked=False, reservation_id="r-2",
                launch_index=0, access_ipv4="", access_ipv6="", networks="none",
                security_groups=[], deleted=False, config_drive=False, created_at=now,
                updated_at=now))
            db.flush()
            time.sleep(0.3)
            db.commit()
            outcomes.append("created")

    threads = [threading.Thread(target=create) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["created", "refused"]


# -- hosts: hypervisors, services, availability zones -----------------------------------------
@pytest.fixture
def host(api: Api) -> Host:
    with api.cloud.session() as db:
        found = hosts.register_host(db, INFO, "node1", host_ip="192.0.2.10")
        db.commit()
        return found


def test_register_and_heartbeat(api: Api, host: Host) -> None:
    with api.cloud.session() as db:
        again = hosts.register_host(db, INFO, "node1")
        db.commit()
        assert again.id == host.id and again.host_ip == "192.0.2.10"
        assert hosts.is_up(again)
        assert hosts.is_up(again, hosts.utcnow() + timedelta(seconds=61)) is False
        assert hosts.heartbeat(db, "node1") is True
        assert hosts.heartbeat(db, "unknown") is False


def test_hypervisors(api: Api, admin_token: str, host: Host) -> None:
    member, project_id, user_id = api.member(admin_token, "hv")
    add_server(api, project_id, user_id, host="node1", vcpus=2, ram=1024)
    fault(api.get(f"{C}/os-hypervisors", member), 403, "forbidden")
    listed = valid(hyper21.list_search_hypervisors, api.get(f"{C}/os-hypervisors",
                                                            admin_token))["hypervisors"]
    assert listed == [{"id": host.id, "hypervisor_hostname": "node1", "state": "up",
                       "status": "enabled"}]
    r = api.get(f"{C}/os-hypervisors/detail", admin_token)
    hyp = valid(hyper21.list_hypervisors_detail, r)["hypervisors"][0]
    assert (hyp["vcpus"], hyp["vcpus_used"], hyp["running_vms"]) == (8, 2, 1)
    assert hyp["memory_mb_used"] == 1024 + 512 and hyp["free_ram_mb"] == 16384 - 1536
    assert hyp["cpu_info"] == '{"arch": "x86_64", "model": "max"}'
    r = api.get(f"{C}/os-hypervisors/{host.id}", admin_token, headers=mv("2.28"))
    assert valid(hyper228.get_hypervisor, r)["hypervisor"]["cpu_info"]["arch"] == "x86_64"
    r = api.get(f"{C}/os-hypervisors/detail?limit=1", admin_token, headers=mv("2.33"))
    assert "hypervisors_links" in valid(hyper233.list_hypervisors_detail, r)
    stats = valid(hyper21.get_hypervisor_statistics,
                  api.get(f"{C}/os-hypervisors/statistics", admin_token))
    assert stats["hypervisor_statistics"]["count"] == 1
    for bad in (str(uuid.uuid4()), "9" * 20, "²"):
        fault(api.get(f"{C}/os-hypervisors/{bad}", admin_token), 404, "itemNotFound")
    r = api.get(f"{C}/os-hypervisors/node/search", admin_token)
    assert valid(hyper21.list_search_hypervisors, r)["hypervisors"][0]["id"] == host.id
    fault(api.get(f"{C}/os-hypervisors/zzz/search", admin_token), 404, "itemNotFound")
    r = api.get(f"{C}/os-hypervisors/node1/servers", admin_token)
    assert len(valid(hyper21.get_hypervisors_servers, r)["hypervisors"][0]["servers"]) == 1


def test_services_and_zones(api: Api, admin_token: str, host: Host) -> None:
    member, _, _ = api.member(admin_token, "sv")
    fault(api.get(f"{C}/os-services", member), 403, "forbidden")
    rows = valid(services21.list_services, api.get(f"{C}/os-services", admin_token))["services"]
    assert {r["binary"] for r in rows} == {"nova-compute", "nova-scheduler", "nova-conductor"}
    r = api.get(f"{C}/os-services?binary=nova-compute", admin_token, headers=mv("2.11"))
    (compute,) = valid(services211.list_services, r)["services"]
    assert (compute["host"], compute["state"], compute["zone"]) == ("node1", "up", "nova")
    assert api.get(f"{C}/os-services?host=node1&binary=xxx", admin_token).json() == {
        "services": []}
    r = api.request("PUT", f"{C}/os-services/disable-log-reason", admin_token,
                    json={"host": "node1", "binary": "nova-compute", "disabled_reason": "fan"})
    assert valid(services21.disable_log_reason, r)["service"]["status"] == "disabled"
    hyp = api.get(f"{C}/os-hypervisors/{host.id}", admin_token).json()["hypervisor"]
    assert hyp["status"] == "disabled" and hyp["service"]["disabled_reason"] == "fan"
    zones = valid(az21.list_availability_zone_list,
                  api.get(f"{C}/os-availability-zone", member))["availabilityZoneInfo"]
    assert zones == [{"zoneName": "nova", "zoneState": {"available": False}, "hosts": None}]
    r = api.request("PUT", f"{C}/os-services/enable", admin_token,
                    json={"host": "node1", "binary": "nova-compute"})
    assert valid(services21.enable_disable_service, r)["service"]["status"] == "enabled"
    fault(api.request("PUT", f"{C}/os-services/force-down", admin_token,
                      json={"host": "node1", "binary": "nova-compute", "forced_down": True}),
          404, "itemNotFound")  # 2.11+
    r = api.request("PUT", f"{C}/os-services/force-down", admin_token, headers=mv("2.11"),
                    json={"host": "node1", "binary": "nova-compute", "forced_down": True})
    assert valid(services211.update_forced_down, r)["service"]["forced_down"] is True
    r = api.get(f"{C}/os-services?binary=nova-compute", admin_token, headers=mv("2.11"))
    assert r.json()["services"][0]["state"] == "down"
    fault(api.request("PUT", f"{C}/os-services/disable", admin_token,
                      json={"host": "nohost", "binary": "nova-compute"}), 404, "itemNotFound")
    fault(api.get(f"{C}/os-availability-zone/detail", member), 403, "forbidden")
    r = api.get(f"{C}/os-availability-zone/detail", admin_token)
    info = {z["zoneName"]: z for z in valid(az21.list_availability_zone_list_detail, r)[
        "availabilityZoneInfo"]}
    assert info["nova"]["hosts"]["node1"]["nova-compute"]["available"] is False  # forced down
    assert info["internal"]["zoneState"]["available"] is True
    service_id = compute["id"]
    valid({"status_code": [204]}, api.request("DELETE", f"{C}/os-services/{service_id}",
                                               admin_token))
    assert api.get(f"{C}/os-hypervisors", admin_token).json()["hypervisors"] == []


# -- aggregates ------------------------------------------------------------------------------
def test_aggregates_and_zones(api: Api, admin_token: str, host: Host) -> None:
    member, _, _ = api.member(admin_token, "ag")
    A = f"{C}/os-aggregates"
    fault(api.post(A, member, json={"aggregate": {"name": "a"}}), 403, "forbidden")
    for name in ("", "a" * 256):
        fault(api.post(A, admin_token, json={"aggregate": {"name": name}}), 400, "badRequest")
    r = api.post(A, admin_token, json={"aggregate": {"name": "rack1",
                                                      "availability_zone": "az1"}})
    agg = valid(aggregates21.create_aggregate, r)["aggregate"]
    assert agg["availability_zone"] == "az1"
    fault(api.post(A, admin_token, json={"aggregate": {"name": "rack1"}}), 409,
          "conflictingRequest")
    act = f"{A}/{agg['id']}/action"
    fault(api.post(act, admin_token, json={"add_host": {"host": "nohost"}}), 404, "itemNotFound")
    r = api.post(act, admin_token, json={"add_host": {"host": "node1"}})
    assert valid(aggregates21.aggregate_add_remove_host, r)["aggregate"]["hosts"] == ["node1"]
    fault(api.post(act, admin_token, json={"add_host": {"host": "node1"}}), 409,
          "conflictingRequest")
    zones = api.get(f"{C}/os-availability-zone", member).json()["availabilityZoneInfo"]
    assert [z["zoneName"] for z in zones] == ["az1"]
    svc = api.get(f"{C}/os-services?binary=nova-compute", admin_token).json()["services"][0]
    assert svc["zone"] == "az1"
    other = api.post(A, admin_token, json={"aggregate": {"name": "rack2",
                                                          "availability_zone": "az2"}})
    r = api.post(f"{A}/{other.json()['aggregate']['id']}/action", admin_token,
                 json={"add_host": {"host": "node1"}})
    assert "availability zone" in fault(r, 409, "conflictingRequest")
    r = api.post(act, admin_token,
                 json={"set_metadata": {"metadata": {"ssd": "true", "x": None}}})
    assert valid(aggregates21.aggregate_set_metadata, r)["aggregate"]["metadata"] == {
        "availability_zone": "az1", "ssd": "true"}
    r = api.request("PUT", f"{A}/{agg['id']}", admin_token, json={"aggregate": {"name": "r1"}})
    assert valid(aggregates21.update_aggregate, r)["aggregate"]["name"] == "r1"
    valid(aggregates21.list_aggregates, api.get(A, admin_token))
    valid(aggregates21.get_aggregate, api.get(f"{A}/{agg['id']}", admin_token))
    fault(api.get(f"{A}/-1", admin_token), 404, "itemNotFound")
    fault(api.get(f"{A}/{'9' * 20}", admin_token), 404, "itemNotFound")
    fault(api.request("DELETE", f"{A}/{agg['id']}", admin_token), 400, "badRequest")
    fault(api.post(act, admin_token, json={"remove_host": {"host": "zzz"}}), 404, "itemNotFound")
    valid(aggregates21.aggregate_add_remove_host,
          api.post(act, admin_token, json={"remove_host": {"host": "node1"}}))
    valid(aggregates21.delete_aggregate, api.request("DELETE", f"{A}/{agg['id']}", admin_token))


# -- server groups ---------------------------------------------------------------------------
def test_server_groups(api: Api, admin_token: str) -> None:
    member, project_id, user_id = api.member(admin_token, "sg")
    G = f"{C}/os-server-groups"
    r = api.post(G, member, json={"server_group": {"name": "web", "policies": ["affinity"]}})
    group = valid(groups21.create_show_server_group, r)["server_group"]
    assert group["policies"] == ["affinity"] and group["members"] == []
    fault(api.post(G, member, json={"server_group": {"name": "w", "policies":
                                                      ["soft-affinity"]}}), 400, "badRequest")
    r = api.post(G, member, headers=mv("2.15"),
                 json={"server_group": {"name": "db", "policies": ["soft-anti-affinity"]}})
    soft = valid(groups213.create_show_server_group, r)["server_group"]
    assert soft["project_id"] == project_id and soft["user_id"] == user_id
    r = api.get(G, member)
    assert group in valid(groups21.list_server_groups, r)["server_groups"]
    assert valid(groups21.create_show_server_group, api.get(f"{G}/{group['id']}",
                                                            member))["server_group"] == group
    other, _, _ = api.member(admin_token, "sg2")
    assert api.get(G, other).json() == {"server_groups": []}
    fault(api.get(f"{G}/{group['id']}", other), 403, "forbidden")
    assert len(api.get(f"{G}?all_projects=True", admin_token).json()["server_groups"]) == 2
    api.request("PUT", f"{C}/os-quota-sets/{project_id}", admin_token,
                json={"quota_set": {"server_groups": 2}})
    r = api.post(G, member, json={"server_group": {"name": "x", "policies": ["affinity"]}})
    assert "server groups" in fault(r, 403, "forbidden")
    valid(groups21.delete_server_group, api.request("DELETE", f"{G}/{group['id']}", member))
    fault(api.get(f"{G}/{group['id']}", member), 404, "itemNotFound")
