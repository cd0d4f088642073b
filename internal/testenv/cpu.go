package testenv

import (
	"syscall"
	"testing"
	"time"
)

// CPUMeter reports a benchmark's CPU time per operation in this process
// ("cpu-µs/op"): Gatehouse's own cost, without that of the servers it
// talks to (Redis processes share the machine's cores in a benchmark and
// run elsewhere in production).
type CPUMeter struct {
	b     *testing.B
	start time.Duration
}

// StartCPU resets b's timer and starts measuring.
func StartCPU(b *testing.B) CPUMeter {
	b.ResetTimer()
	return CPUMeter{b, processCPU(b)}
}

// Report stops b's timer and reports the CPU time per operation.
func (m CPUMeter) Report() {
	m.b.StopTimer()
	m.b.ReportMetric(float64((processCPU(m.b)-m.start).Microseconds())/float64(m.b.N), "cpu-µs/op")
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
