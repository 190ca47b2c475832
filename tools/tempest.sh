#!/usr/bin/env bash
# Run Tempest's API tests for one service against a running picocloud.
#
#   tools/tempest.sh SERVICE [DATA_DIR] [extra `tempest run` args...]
#
# SERVICE: identity | image | compute | network | volume
# DATA_DIR: where picocloud wrote clouds.yaml
#           (default ${PICOCLOUD_DATA_DIR:-$HOME/.local/share/picocloud}).
# Environment:
#   TEMPEST               tempest executable (default: the repo's .venv/bin/tempest)
#   TEMPEST_CONCURRENCY   workers (default 2)
#   TEMPEST_ARGS          extra `tempest run` arguments (word-split)
#   TEMPEST_SERVICES      services to mark available, e.g. "nova glance neutron"
#                         (default: the one under test; identity is always on)
#   TEMPEST_IMAGE_REF[_ALT], TEMPEST_FLAVOR_REF[_ALT], TEMPEST_PUBLIC_NETWORK_ID,
#   TEMPEST_COMPUTE_MAX_MICROVERSION, TEMPEST_VOLUME_MAX_MICROVERSION
#                         written to tempest.conf when set
#   TEMPEST_EXTRA_CONF    a file appended verbatim to tempest.conf (feature flags...)
# Prints `passed: N`, `failed: N`, `skipped: N` and the log/subunit paths; exits 0 when
# tempest ran, whatever the test results, and non-zero when it could not run.
set -euo pipefail

usage="usage: $0 identity|image|compute|network|volume [DATA_DIR] [tempest run args...]"
service=${1:?$usage}
shift
data_dir=${PICOCLOUD_DATA_DIR:-$HOME/.local/share/picocloud}
if [[ $# -gt 0 && $1 != -* ]]; then data_dir=$1; shift; fi
data_dir=$(realpath -m "$data_dir")

case $service in
  identity) regex='^tempest\.api\.identity'; available='' ;;
  image)    regex='^tempest\.api\.image\.v2'; available='glance' ;;
  # The issue's scope: flavors, keypairs, servers, limits, quotas, zones, server groups.
  compute)  regex='^tempest\.api\.compute\.(flavors|keypairs|limits|quotas|servers|admin\.test_(flavors|quotas|availability_zone|servers|server_groups|keypairs)|test_quotas|.*server_group)'
            available='nova glance' ;;
  network)  regex='^tempest\.api\.network'; available='neutron' ;;
  volume)   regex='^tempest\.api\.volume'; available='cinder' ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
available=${TEMPEST_SERVICES:-$available}
# Tests of Neutron's security groups through Nova's add/removeSecurityGroup: they need the
# networking service, which picocloud does not have yet.
exclude=''
if [[ $service == compute && " $available " != *" neutron "* ]]; then
  exclude='test_remove_server_all_security_groups'
fi

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tempest=${TEMPEST:-$repo/.venv/bin/tempest}
if [[ ! -x $tempest ]]; then
  "$(dirname "$tempest")/pip" install tempest
fi
python=$(dirname "$tempest")/python  # the tempest venv has PyYAML (via openstacksdk)

clouds=$data_dir/clouds.yaml
[[ -f $clouds ]] || { echo "no $clouds: is picocloud running?" >&2; exit 1; }
# One value per line: auth_url (ending in /v3), username, password, project, domain,
# region; `$` doubled since oslo.config interpolates it.
mapfile -t cloud < <("$python" - "$clouds" <<'EOF'
import sys, yaml
cloud = yaml.safe_load(open(sys.argv[1]))["clouds"]["picocloud"]
auth = cloud["auth"]
url = auth["auth_url"].rstrip("/")
for value in (
    url if url.endswith("/v3") else url + "/v3",
    auth.get("username", "admin"),
    auth["password"],
    auth.get("project_name", "admin"),
    auth.get("user_domain_name", "Default"),
    cloud.get("region_name", "RegionOne"),
):
    print(str(value).replace("$", "$$"))
EOF
)
[[ ${#cloud[@]} -eq 6 ]] || { echo "cannot read the picocloud cloud from $clouds" >&2; exit 1; }

if [[ $service == compute ]]; then
  # What the cloud offers: the built-in image, the two small seeded flavors, the newest
  # microversion its version document advertises.
  mapfile -t found < <(OS_CLIENT_CONFIG_FILE=$clouds OS_CLOUD=picocloud "$python" - <<'EOF'
import tempfile
import openstack
conn = openstack.connect()
image = next(conn.image.images(name="tiny"), None)
print(image.id if image else "")
# Rebuild tests want a second image: the same bytes under another id, made once.
alt = next(conn.image.images(name="tiny-alt"), None)
if image and image.status == "active" and alt is None:
    with tempfile.NamedTemporaryFile(suffix=".qcow2") as f:
        conn.image.download_image(image, output=f.name)
        alt = conn.create_image("tiny-alt", filename=f.name, disk_format="qcow2",
                                container_format="bare", visibility="public", wait=True)
print(alt.id if alt else "")
print(next((f.id for f in conn.compute.flavors() if f.name == "p1.tiny"), ""))
print(next((f.id for f in conn.compute.flavors() if f.name == "p1.small"), ""))
url = conn.compute.get_endpoint().rstrip("/")
print(conn.session.get(url).json()["version"]["version"])
EOF
)
  TEMPEST_IMAGE_REF=${TEMPEST_IMAGE_REF:-${found[0]:-}}
  TEMPEST_IMAGE_REF_ALT=${TEMPEST_IMAGE_REF_ALT:-${found[1]:-}}
  TEMPEST_FLAVOR_REF=${TEMPEST_FLAVOR_REF:-${found[2]:-}}
  TEMPEST_FLAVOR_REF_ALT=${TEMPEST_FLAVOR_REF_ALT:-${found[3]:-}}
  TEMPEST_COMPUTE_MAX_MICROVERSION=${TEMPEST_COMPUTE_MAX_MICROVERSION:-${found[4]:-}}
  [[ -n $TEMPEST_IMAGE_REF ]] || { echo "no active 'tiny' image yet: wait for picocloud up" >&2; exit 1; }
fi

# Image locations (Glance's show_multiple_locations + http store) are an operator's choice
# (image_locations): tested when the cloud lists the read-only `web` store.
locations=false
if [[ " $available " == *" glance "* ]]; then
  locations=$(OS_CLIENT_CONFIG_FILE=$clouds OS_CLOUD=picocloud "$python" - <<'EOF'
import openstack
conn = openstack.connect()
url = conn.image.get_endpoint().rstrip("/").removesuffix("/v2")
stores = conn.session.get(f"{url}/v2/info/stores").json().get("stores", [])
print("true" if any(s.get("read-only") == "true" and s["id"] == "web" for s in stores)
      else "false")
EOF
)
fi

ws=$data_dir/tempest/cloud
if [[ ! -f $ws/.stestr.conf ]]; then
  mkdir -p "$data_dir/tempest"
  "$tempest" init --workspace-path "$data_dir/tempest/workspace.yaml" "$ws"
fi

# web-download imports fetch CONF.image.http_qcow2_image: serve a small generated qcow2 (and
# a raw file for http_image) from a loopback web server for the length of the run. The
# picocloud under test must allow it: image_import_allowed_hosts = "public,127.0.0.1".
http_url=''
if [[ " $available " == *" glance "* ]]; then
  http_dir=$ws/http
  mkdir -p "$http_dir"
  head -c 4096 /dev/urandom >"$http_dir/image.raw"
  if [[ ! -f $http_dir/image.qcow2 ]] && command -v qemu-img >/dev/null; then
    qemu-img create -q -f qcow2 "$http_dir/image.qcow2" 1M
  fi
  "$python" -u -m http.server 0 --bind 127.0.0.1 --directory "$http_dir" \
    >"$ws/http.log" 2>&1 &
  http_pid=$!
  trap 'kill "$http_pid" 2>/dev/null || true' EXIT
  for _ in $(seq 50); do
    port=$(sed -n 's/^Serving HTTP on .* port \([0-9][0-9]*\).*/\1/p' "$ws/http.log")
    if [[ -n $port ]]; then http_url=http://127.0.0.1:$port; break; fi
    sleep 0.1
  done
  if [[ -n $http_url ]]; then
    echo "web-download source: $http_url/image.qcow2 (picocloud must allow 127.0.0.1" \
      "in image_import_allowed_hosts)"
  else
    echo "no loopback web server for web-download (see $ws/http.log)" >&2
  fi
fi

on() { [[ " $available " == *" $1 "* ]] && echo true || echo false; }
opt() { [[ -n ${2:-} ]] && echo "$1 = $2"; return 0; }
{
  cat <<EOF
[DEFAULT]
log_dir = $ws/logs
log_file = tempest.log

[oslo_concurrency]
lock_path = $ws/tempest_lock

[auth]
admin_username = ${cloud[1]}
admin_password = ${cloud[2]}
admin_project_name = ${cloud[3]}
admin_domain_name = ${cloud[4]}
use_dynamic_credentials = true
create_isolated_networks = $(on neutron)

[identity]
uri_v3 = ${cloud[0]}
auth_version = v3
region = ${cloud[5]}

[identity-feature-enabled]
api_v2 = false
api_v3 = true
trust = true
access_rules = true
security_compliance = false
api_extensions = all

[service_available]
nova = $(on nova)
neutron = $(on neutron)
glance = $(on glance)
cinder = $(on cinder)
swift = false
horizon = false

[validation]
run_validation = false

[compute]
EOF
  opt image_ref "${TEMPEST_IMAGE_REF:-}"
  opt image_ref_alt "${TEMPEST_IMAGE_REF_ALT:-${TEMPEST_IMAGE_REF:-}}"
  opt flavor_ref "${TEMPEST_FLAVOR_REF:-}"
  opt flavor_ref_alt "${TEMPEST_FLAVOR_REF_ALT:-${TEMPEST_FLAVOR_REF:-}}"
  opt max_microversion "${TEMPEST_COMPUTE_MAX_MICROVERSION:-}"
  printf '\n[volume]\ncatalog_type = block-storage\n'
  opt max_microversion "${TEMPEST_VOLUME_MAX_MICROVERSION:-}"
  # picocloud inspects uploaded bytes. Tempest's list tests upload random bytes (honestly
  # raw) as the first six (container, disk) format pairs, so the first six disk formats may
  # hold raw bytes (repeats included); qcow2 comes after them, for the web-download import
  # of a real qcow2.
  printf '\n[image]\ncontainer_formats = bare,ami,ari,aki\n'
  printf 'disk_formats = raw,ami,ari,aki,raw,ami,qcow2\n'
  opt http_image "${http_url:+$http_url/image.raw}"
  opt http_qcow2_image "${http_url:+$http_url/image.qcow2}"
  printf '\n[image-feature-enabled]\nimport_image = true\nimage_format_enforcement = false\n'
  printf 'manage_locations = %s\nhttp_store_enabled = %s\ndo_secure_hash = true\n' \
    "$locations" "$locations"
  printf '\n[network]\n'
  opt public_network_id "${TEMPEST_PUBLIC_NETWORK_ID:-}"
  if [[ -n ${TEMPEST_EXTRA_CONF:-} ]]; then echo; cat "$TEMPEST_EXTRA_CONF"; fi
} >"$ws/etc/tempest.conf"

if [[ $(on nova) == true ]]; then  # what picocloud's compute offers, for any suite using it
  cat "$repo/tools/tempest/compute.conf" >>"$ws/etc/tempest.conf"
fi

read -ra extra <<<"${TEMPEST_ARGS:-}"
console=$ws/logs/$service-$(date +%Y%m%d-%H%M%S).txt
cd "$ws"
set +e
"$tempest" run --config-file "$ws/etc/tempest.conf" --regex "$regex" \
  ${exclude:+--exclude-regex "$exclude"} \
  --concurrency "${TEMPEST_CONCURRENCY:-2}" \
  "${extra[@]}" "$@" 2>&1 | tee "$console"
rc=${PIPESTATUS[0]}
set -e

count() { sed -n "s/^ *- $1: *\([0-9][0-9]*\).*/\1/p" "$console" | tail -n1; }
passed=$(count Passed) failed=$(count Failed) skipped=$(count Skipped)
if [[ -z $passed || -z $failed ]]; then  # no summary: --list-tests, or tempest failed
  [[ $rc -eq 0 ]] && exit 0
  printf "\ntempest did not run (exit %s); see %s\n" "$rc" "$console" >&2
  exit "$rc"
fi
echo "passed: $passed"
echo "failed: $failed"
echo "skipped: ${skipped:-0}"
echo "console: $console"
echo "log: $ws/logs/tempest.log"
last=$(($(cat "$ws/.stestr/next-stream" 2>/dev/null || echo 1) - 1))
echo "subunit: $ws/.stestr/$last"
