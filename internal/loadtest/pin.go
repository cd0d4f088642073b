package loadtest

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// Pinning keeps the load generator and the servers of the forward-auth
// and bearer rounds off each other's CPUs: wrk on the last CPU this process may use,
// every server the round measures (bare, Gatehouse, oauth2-proxy) on the
// others, the same CPUs for all so their ratios stay fair. Servers start
// under `taskset -c`, so the Go runtime sizes GOMAXPROCS from the
// affinity it is born with. Without it, 64 connections and wrk queue for
// the same cores and latency measures the queue. Only these two rounds
// are pinned; every other figure keeps the unpinned setting it was
// recorded with.
type Pinning struct {
	Client  string // CPU list wrk runs on; "" when the round is not pinned
	Servers string // CPU list every measured server runs on
	// Note says why the round is not pinned ("" when it is).
	Note    string
	taskset string
}

// On reports whether the round is pinned.
func (p Pinning) On() bool { return p.Client != "" }

// planPinning decides the round's pinning from whether it is wanted, the
// CPUs this process may run on, and taskset's path ("" when not found).
func planPinning(want bool, cpus []int, taskset string) Pinning {
	switch {
	case !want:
		return Pinning{Note: "off (-pin=false)"}
	case len(cpus) < 2:
		return Pinning{Note: fmt.Sprintf("%d CPU available: nothing to pin apart", len(cpus))}
	case taskset == "":
		return Pinning{Note: "taskset not found (util-linux)"}
	}
	return Pinning{Client: strconv.Itoa(cpus[len(cpus)-1]), Servers: formatCPUList(cpus[:len(cpus)-1]), taskset: taskset}
}

// pinningHere plans the pinning for this process and machine.
func pinningHere(want bool) Pinning {
	if !want {
		return planPinning(false, nil, "")
	}
	cpus, err := allowedCPUs()
	if err != nil {
		return Pinning{Note: "CPUs allowed unknown: " + err.Error()}
	}
	taskset, _ := exec.LookPath("taskset")
	return planPinning(true, cpus, taskset)
}

// server is the command line that starts a measured server: under
// taskset on the servers' CPUs when pinned, as is otherwise. taskset
// execs the server, so its pid is the server's.
func (p Pinning) server(name string, args []string) (string, []string) {
	return p.wrap(p.Servers, name, args)
}

// client is the same for the load generator.
func (p Pinning) client(name string, args []string) (string, []string) {
	return p.wrap(p.Client, name, args)
}

func (p Pinning) wrap(cpus, name string, args []string) (string, []string) {
	if !p.On() {
		return name, args
	}
	return p.taskset, append([]string{"-c", cpus, name}, args...)
}

// String says how the round ran, for the report.
func (p Pinning) String() string {
	if !p.On() {
		return "not pinned: " + p.Note
	}
	return fmt.Sprintf("pinned with taskset: wrk on CPU %s; the bare server, Gatehouse and oauth2-proxy each on CPU %s", p.Client, p.Servers)
}

// allowedCPUs reads the CPUs this process may run on.
func allowedCPUs() ([]int, error) { return cpusOf("self") }

// cpusOf reads the CPUs a process ("self" or a pid) may run on.
func cpusOf(pid string) ([]int, error) {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return parseCPUList(strings.TrimSpace(v))
		}
	}
	return nil, fmt.Errorf("no Cpus_allowed_list in /proc/%s/status", pid)
}

// check makes sure a server started with p runs on the servers' CPUs, so
// the report never claims a pinning that did not take.
func (p Pinning) check(name string, pid int) error {
	if !p.On() {
		return nil
	}
	cpus, err := cpusOf(strconv.Itoa(pid))
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if got := formatCPUList(cpus); got != p.Servers {
		return fmt.Errorf("%s runs on CPUs %s, not %s as pinned", name, got, p.Servers)
	}
	return nil
}

// parseCPUList reads the kernel's list format ("0-3,8,10-11"), ascending.
func parseCPUList(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("CPU list %q: bad %q", s, part)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("CPU list %q: bad %q", s, part)
			}
		}
		if len(out) > 0 && a <= out[len(out)-1] {
			return nil, fmt.Errorf("CPU list %q: not ascending", s)
		}
		for c := a; c <= b; c++ {
			out = append(out, c)
		}
	}
	return out, nil
}

// formatCPUList writes ascending CPUs in the list format taskset -c reads.
func formatCPUList(cpus []int) string {
	var parts []string
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if j == i {
			parts = append(parts, strconv.Itoa(cpus[i]))
		} else {
			parts = append(parts, strconv.Itoa(cpus[i])+"-"+strconv.Itoa(cpus[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}
