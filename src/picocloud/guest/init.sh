#!/bin/sh
# picocloud tiny guest init (busybox ash). One script, three roles:
#   /init in the initramfs   - load the kernel modules, mount the root disk, switch_root;
#   picocloud-init start     - busybox init's sysinit: configure the guest from a config drive
#                              or the metadata service, start dropbear, print the ready marker;
#   picocloud-init stop      - busybox init's shutdown: stop processes, remount / read-only.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
MD_URL=http://169.254.169.254/openstack/latest
RUN=/run/picocloud
STATE=/var/lib/picocloud

log() { echo "picocloud-guest: $*"; }

# load_modules insmods /etc/picocloud/modules, which the builder wrote in dependency order.
load_modules() {
    kver=$(uname -r)
    while read -r mod; do
        [ -n "$mod" ] || continue
        [ -d "/sys/module/$(echo "$mod" | tr - _)" ] && continue
        insmod "/lib/modules/$kver/$mod.ko" || log "insmod $mod failed"
    done </etc/picocloud/modules
}

cmdline_arg() {
    for arg in $(cat /proc/cmdline); do
        case $arg in "$1"=*) echo "${arg#*=}"; return ;; esac
    done
}

initramfs() {
    mount -t proc proc /proc
    mount -t sysfs sysfs /sys
    mount -t devtmpfs devtmpfs /dev
    load_modules
    root=$(cmdline_arg root)
    dev=
    tries=0
    while [ -z "$dev" ] && [ $tries -lt 100 ]; do
        case $root in
            LABEL=* | UUID=*) dev=$(findfs "$root" 2>/dev/null) ;;
            *) [ -b "$root" ] && dev=$root ;;
        esac
        [ -n "$dev" ] || usleep 100000
        tries=$((tries + 1))
    done
    if [ -z "$dev" ] || ! mount -t ext4 -o rw "$dev" /newroot; then
        log "cannot mount the root file system '$root'; here is a shell"
        exec sh
    fi
    umount /proc /sys
    mount --move /dev /newroot/dev
    exec switch_root /newroot /sbin/init
}

mounted() { grep -q "^[^ ]* $1 " /proc/mounts; }

mount_system() {
    [ -e /proc/mounts ] || mount -t proc proc /proc
    mounted /sys || mount -t sysfs sysfs /sys
    mounted /dev || mount -t devtmpfs devtmpfs /dev
    mkdir -p /dev/pts /dev/shm
    mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
    mount -t tmpfs -o mode=755,size=16m tmpfs /run
    mkdir -p "$RUN" "$STATE" /var/log
    mount -o remount,rw / 2>/dev/null
}

# mount_extra_disks mounts an ephemeral disk on /mnt and enables swap, found by their labels.
mount_extra_disks() {
    dev=$(findfs LABEL=ephemeral0 2>/dev/null) && mount "$dev" /mnt 2>/dev/null &&
        log "ephemeral disk $dev on /mnt"
    dev=$(findfs LABEL=swap0 2>/dev/null) && swapon "$dev" 2>/dev/null && log "swap on $dev"
    return 0
}

# dhcp brings up eth0 and blocks until a lease (or 20 tries); no NIC means no wait at all.
dhcp() {
    [ -e /sys/class/net/eth0 ] || return 0
    ip link set eth0 up
    udhcpc -i eth0 -O staticroutes -t 20 -T 3 -n -p "$RUN/udhcpc.pid" \
        -s /usr/share/udhcpc/default.script >/dev/null 2>&1 || log "no DHCP lease on eth0"
}

# read_config_drive copies meta_data.json and user_data from a disk labelled config-2.
read_config_drive() {
    dev=$(findfs LABEL=config-2 2>/dev/null) || dev=$(findfs LABEL=CONFIG-2 2>/dev/null) || return 1
    mkdir -p /mnt/config
    mount -t iso9660 -o ro "$dev" /mnt/config 2>/dev/null ||
        mount -t vfat -o ro "$dev" /mnt/config 2>/dev/null || return 1
    src=/mnt/config/openstack/latest
    ok=1
    if [ -f "$src/meta_data.json" ]; then
        cp "$src/meta_data.json" "$RUN/meta_data.json"
        [ -f "$src/user_data" ] && cp "$src/user_data" "$RUN/user_data"
        ok=0
    fi
    umount /mnt/config
    return $ok
}

# fetch URL FILE: busybox wget -T segfaults, so the timeout comes from timeout(1).
fetch() {
    timeout 5 wget -q -O "$2.tmp" "$1" 2>/dev/null && mv "$2.tmp" "$2" && return 0
    rm -f "$2.tmp"
    return 1
}

read_metadata_service() {
    [ -s "$RUN/ip" ] || return 1
    for _ in 1 2 3 4 5; do
        fetch "$MD_URL/meta_data.json" "$RUN/meta_data.json" && break
        sleep 1
    done
    [ -s "$RUN/meta_data.json" ] || return 1
    fetch "$MD_URL/user_data" "$RUN/user_data" || true
    return 0
}

# json_string KEY prints the string value of KEY at the top level of the metadata.
json_string() {
    sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\([^\"]*\)\".*/\1/p" "$RUN/meta.top"
}

apply_metadata() {
    [ -s "$RUN/meta_data.json" ] || return 0
    tr '\n\r' '  ' <"$RUN/meta_data.json" >"$RUN/meta.flat"
    # meta.top: the outer braces removed and every nested object or array replaced by 0, so that
    # "name" in "keys" or a "hostname" property in "meta" cannot shadow the top-level keys.
    sed -e 's/^[[:space:]]*{//' -e 's/}[[:space:]]*$//' \
        -e ':a' -e 's/{[^{}]*}/0/g' -e 's/\[[^][]*\]/0/g' -e 'ta' "$RUN/meta.flat" >"$RUN/meta.top"
    uuid=$(json_string uuid)
    if [ "$uuid" != "$(cat "$STATE/instance-id" 2>/dev/null)" ]; then
        # A new instance (or a snapshot booted as one) gets its own SSH host keys.
        rm -f /etc/dropbear/dropbear_*_host_key "$STATE/user-data-done"
        echo "$uuid" >"$STATE/instance-id"
    fi
    fqdn=$(json_string hostname | tr -cd 'A-Za-z0-9.-')
    [ -n "$fqdn" ] || fqdn=$(json_string name | tr -cd 'A-Za-z0-9.-')
    if [ -n "$fqdn" ]; then
        short=$(echo "${fqdn%%.*}" | cut -c 1-63)
        echo "$short" >/etc/hostname
        printf '127.0.0.1 localhost\n127.0.1.1 %s %s\n' "$fqdn" "$short" >/etc/hosts
    fi
    keys=$(sed -n 's/.*"public_keys"[[:space:]]*:[[:space:]]*{\([^}]*\)}.*/\1/p' "$RUN/meta.flat")
    if [ -n "$keys" ]; then
        mkdir -p /root/.ssh
        chmod 700 /root/.ssh
        touch /root/.ssh/authorized_keys
        echo "$keys" | grep -o '"[^"]*"[[:space:]]*:[[:space:]]*"[^"]*"' |
            sed -e 's/^"[^"]*"[[:space:]]*:[[:space:]]*"//' -e 's/"$//' \
                -e 's/\\n$//' -e 's/\\\//\//g' |
            while read -r key; do
                [ -n "$key" ] || continue
                grep -qxF "$key" /root/.ssh/authorized_keys || echo "$key" >>/root/.ssh/authorized_keys
            done
        chmod 600 /root/.ssh/authorized_keys
    fi
}

# run_user_data runs a user_data script once per instance, like cloud-init does.
run_user_data() {
    ud=$RUN/user_data
    [ -s "$ud" ] && [ ! -e "$STATE/user-data-done" ] || return 0
    [ "$(head -c 2 "$ud")" = "#!" ] || return 0
    cp "$ud" "$STATE/user_data"
    chmod 700 "$STATE/user_data"
    touch "$STATE/user-data-done"
    log "running user_data"
    "$STATE/user_data" >/var/log/user-data.log 2>&1
    log "user_data exited with status $? (output in /var/log/user-data.log)"
}

start_dropbear() {
    mkdir -p /etc/dropbear
    for type in ed25519 ecdsa; do
        key=/etc/dropbear/dropbear_${type}_host_key
        [ -s "$key" ] || dropbearkey -t "$type" -f "$key" >/dev/null 2>&1
        dropbearkey -y -f "$key" 2>/dev/null | sed -n 's/^Fingerprint: /picocloud-guest: ssh host key '"$type"' /p'
    done
    # -R creates any other host key type on demand; -s: keys only, never passwords.
    dropbear -R -s -p 22
}

start() {
    mount_system
    hostname -F /etc/hostname
    ip link set lo up
    load_modules
    mount_extra_disks
    syslogd
    # The power button (QMP system_powerdown) runs /etc/acpi/PWRF/00000080, i.e. poweroff.
    setsid acpid -d </dev/null >/dev/null 2>&1 &
    dhcp
    source=none
    if read_config_drive; then
        source=configdrive
    elif read_metadata_service; then
        source=network
    fi
    apply_metadata
    hostname -F /etc/hostname
    start_dropbear
    run_user_data
    ip=$(cat "$RUN/ip" 2>/dev/null)
    echo "picocloud-guest ready hostname=$(hostname) ip=${ip:-none} metadata=$source"
}

stop() {
    # Daemons die at once on SIGTERM; what is left gets SIGKILL so that / can go read-only.
    kill -TERM -1 2>/dev/null
    usleep 300000
    kill -KILL -1 2>/dev/null
    sync
    mount -o remount,ro / 2>/dev/null
    umount -a -r 2>/dev/null
    sync
}

case $1 in
    start) start ;;
    stop) stop ;;
    *) [ -e /etc/picocloud-initramfs ] && initramfs ;;
esac
