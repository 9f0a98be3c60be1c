// Package xendom asks the hypervisor whether a domain exists, through
// /dev/xen/privcmd and a hypercall of Xen's stable ABI. vtpmback needs
// "this domid no longer exists" to stop a guest's swtpm, and xenstore
// cannot say it: a soft reset (the stub's kexec) removes and recreates
// /local/domain/<id> and fires @releaseDomain, yet the domain lives on
// (libxl's do_domain_soft_reset, tools/libs/light/libxl_create.c).
package xendom

// Constants from Xen's public headers (libxen-dev, checked by the
// tests): xen/xen.h, xen/memory.h, and Linux's xen/sys/privcmd.h.
const (
	hypervisorMemoryOp              = 12 // __HYPERVISOR_memory_op
	xenmemCurrentReservation        = 3  // XENMEM_current_reservation
	privcmdHypercallSize            = 48 // sizeof(privcmd_hypercall_t): op + 5 args, u64 each
	ioctlPrivcmdHypercall           = 0x305000
	defaultPrivcmd                  = "/dev/xen/privcmd"
	domidFirstReserved       uint32 = 0x7ff0 // DOMID_FIRST_RESERVED
)

// Why XENMEM_current_reservation: Xen 4.17's memory_op
// (xen/common/memory.c, do_memory_op) looks the domain up with
// rcu_lock_domain_by_any_id and returns -ESRCH when there is none,
// before any permission check that could fail otherwise; dom0 passes
// xsm_memory_stat_reservation. A domain being destroyed (dying) still
// answers: it is gone once its last page is freed and it leaves the
// domain list, and only then is its vTPM state final.
