// Command gen is the /init of a throwaway initramfs that prints the
// firmware's TCG event log on the serial console, base64-encoded between
// markers, then powers off. gen.sh builds it and boots it under QEMU
// SeaBIOS with swtpm; it is not part of any test.
package main

import (
	"encoding/base64"
	"fmt"
	"os"
	"syscall"
)

func main() {
	os.MkdirAll("/sys", 0o755)
	if err := syscall.Mount("sysfs", "/sys", "sysfs", 0, ""); err != nil {
		fmt.Println("mount sysfs:", err)
	}
	if err := syscall.Mount("securityfs", "/sys/kernel/security", "securityfs", 0, ""); err != nil {
		fmt.Println("mount securityfs:", err)
	}
	b, err := os.ReadFile("/sys/kernel/security/tpm0/binary_bios_measurements")
	if err != nil {
		fmt.Println("read event log:", err)
	} else {
		fmt.Println("-----BEGIN EVENTLOG-----")
		s := base64.StdEncoding.EncodeToString(b)
		for len(s) > 76 {
			fmt.Println(s[:76])
			s = s[76:]
		}
		fmt.Println(s)
		fmt.Println("-----END EVENTLOG-----")
	}
	syscall.Sync()
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
}
