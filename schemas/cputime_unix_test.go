//go:build unix

package schemas

import (
	"syscall"
	"time"
)

// processCPUTime is the CPU time (user + system) this process has used. On a
// machine shared with other work, CPU time per operation measures the cost of
// the code better than wall time, which includes waiting for a core.
func processCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
