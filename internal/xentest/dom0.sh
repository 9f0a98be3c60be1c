#!/bin/bash
# dom0's setup, run by dom0init on the overlay of the host's root: the Xen
# daemons a domU needs (oxenstored, xen-init-dom0, xenconsoled), then the
# test's plan, $XENTEST_OUT/plan.sh, then power-off (dom0init). Everything
# it says goes to the console (hvc0), which QEMU's serial log captures as
# part of Xen's console ring; the plan writes its results under
# $XENTEST_OUT, which the host reads after QEMU exits.
set -u
. "$XENTEST_OUT/xentest.env"
log() { echo "xentest: $*"; }
mkdir -p /dev/pts /dev/shm /run /var/run /var/log/xen /var/lib/xen /var/lib/xenstored
mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mkdir -p /run/xen /run/xenstored /var/lib/xen/dump
rel=$(uname -r)
# The host's /lib/modules is for the host's kernel, not this one.
mkdir -p "/lib/modules/$rel"
mount --bind "$XENTEST_KMODS" "/lib/modules/$rel"
for m in xenfs xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xen-blkback loop; do
  modprobe "$m" || log "modprobe $m failed"
done
mount -t xenfs xenfs /proc/xen
log "xen $(cat /sys/hypervisor/version/major).$(cat /sys/hypervisor/version/minor), dom0 kernel $rel"
/usr/sbin/oxenstored --pid-file /run/xenstored.pid
for i in $(seq 100); do [ -S /run/xenstored/socket ] && break; sleep 0.1; done
/usr/lib/xen-4.17/bin/xen-init-dom0 || log "xen-init-dom0 failed"
mkdir -p "$XENTEST_OUT/consoles"; /usr/lib/xen-4.17/bin/xenconsoled --pid-file=/run/xenconsoled.pid --log=guest --log-dir="$XENTEST_OUT/consoles" || log "xenconsoled failed"
log "dom0 ready after $(cut -d' ' -f1 /proc/uptime)s"
. "$XENTEST_OUT/plan.sh"
log "plan done"
