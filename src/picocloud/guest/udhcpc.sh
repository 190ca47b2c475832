#!/bin/sh
# udhcpc event script of the picocloud tiny guest: address, routes (classless static routes,
# option 121, first, so the metadata route arrives), DNS, and the address for the ready marker.
RUN=/run/picocloud

case $1 in
    deconfig)
        ip -4 addr flush dev "$interface"
        ip link set "$interface" up
        rm -f "$RUN/ip"
        ;;
    bound | renew)
        [ "$1" = bound ] && ip -4 addr flush dev "$interface"
        ip addr replace "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} dev "$interface"
        [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
        if [ -n "$staticroutes" ]; then
            set -- $staticroutes
            while [ $# -ge 2 ]; do
                if [ "$2" = 0.0.0.0 ]; then
                    ip route replace "$1" dev "$interface"
                else
                    ip route replace "$1" via "$2" dev "$interface"
                fi
                shift 2
            done
        fi
        # RFC 3442 says to ignore the router option when option 121 is present; we only use
        # it when option 121 brought no default route.
        if [ -z "$(ip -4 route show default)" ]; then
            for gw in $router; do
                ip route replace default via "$gw" dev "$interface" && break
            done
        fi
        {
            [ -n "$domain" ] && echo "search $domain"
            for ns in $dns; do echo "nameserver $ns"; done
        } >/etc/resolv.conf.tmp && mv /etc/resolv.conf.tmp /etc/resolv.conf
        mkdir -p "$RUN"
        echo "$ip" >"$RUN/ip"
        ;;
esac
exit 0
