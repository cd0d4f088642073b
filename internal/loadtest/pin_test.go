package loadtest

import (
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestPlanPinning_ClientOnLastCPUServersOnTheRest holds the forward-auth
// round's CPU split: wrk alone on the last allowed CPU, every server on
// all the others, and no pinning (with the reason) where it cannot be.
func TestPlanPinning_ClientOnLastCPUServersOnTheRest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name            string
		want            bool
		cpus            []int
		taskset         string
		client, servers string
		note            bool
	}{
		{name: "two CPUs", want: true, cpus: []int{0, 1}, taskset: "/usr/bin/taskset", client: "1", servers: "0"},
		{name: "eight CPUs", want: true, cpus: []int{0, 1, 2, 3, 4, 5, 6, 7}, taskset: "/usr/bin/taskset", client: "7", servers: "0-6"},
		{name: "a container's scattered CPUs", want: true, cpus: []int{2, 3, 5, 9}, taskset: "/usr/bin/taskset", client: "9", servers: "2-3,5"},
		{name: "one CPU", want: true, cpus: []int{3}, taskset: "/usr/bin/taskset", note: true},
		{name: "no taskset", want: true, cpus: []int{0, 1}, note: true},
		{name: "turned off", want: false, cpus: []int{0, 1}, taskset: "/usr/bin/taskset", note: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := planPinning(tc.want, tc.cpus, tc.taskset)
			if p.Client != tc.client || p.Servers != tc.servers || p.On() != (tc.client != "") || (p.Note != "") != tc.note {
				t.Errorf("planPinning(%v, %v, %q) = %+v, want client %q, servers %q, a note: %v", tc.want, tc.cpus, tc.taskset, p, tc.client, tc.servers, tc.note)
			}
		})
	}
}

// TestPinning_CommandLines checks that a pinned round starts servers and
// wrk under taskset on their own CPUs and an unpinned one as they are.
func TestPinning_CommandLines(t *testing.T) {
	t.Parallel()
	p := planPinning(true, []int{0, 1, 2}, "/usr/bin/taskset")
	name, args := p.server("/tmp/gatehouse", []string{"-env-file", "/dev/null"})
	if want := []string{"-c", "0-1", "/tmp/gatehouse", "-env-file", "/dev/null"}; name != "/usr/bin/taskset" || !slices.Equal(args, want) {
		t.Errorf("server: %s %q, want /usr/bin/taskset %q", name, args, want)
	}
	name, args = p.client("/usr/bin/wrk", []string{"-t1", "http://127.0.0.1:1/"})
	if want := []string{"-c", "2", "/usr/bin/wrk", "-t1", "http://127.0.0.1:1/"}; name != "/usr/bin/taskset" || !slices.Equal(args, want) {
		t.Errorf("client: %s %q, want /usr/bin/taskset %q", name, args, want)
	}
	off := planPinning(false, []int{0, 1, 2}, "/usr/bin/taskset")
	name, args = off.server("/tmp/gatehouse", []string{"-env-file", "/dev/null"})
	if name != "/tmp/gatehouse" || !slices.Equal(args, []string{"-env-file", "/dev/null"}) {
		t.Errorf("unpinned server: %s %q", name, args)
	}
}

func TestParseCPUList_RoundTripsAndRefusesNonsense(t *testing.T) {
	t.Parallel()
	for s, want := range map[string][]int{"0": {0}, "0-1": {0, 1}, "0-3,8,10-11": {0, 1, 2, 3, 8, 10, 11}} {
		got, err := parseCPUList(s)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("parseCPUList(%q) = %v, %v, want %v", s, got, err, want)
		}
		if back := formatCPUList(got); back != s {
			t.Errorf("formatCPUList(%v) = %q, want %q", got, back, s)
		}
	}
	for _, s := range []string{"", "a", "3-1", "1,0", "0-1,1", "-1", "0,,1"} {
		if got, err := parseCPUList(s); err == nil {
			t.Errorf("parseCPUList(%q) = %v, want an error", s, got)
		}
	}
}

// TestPinning_ServerRunsOnItsCPUs starts a real process the way the round
// starts its servers and reads its affinity back from the kernel.
func TestPinning_ServerRunsOnItsCPUs(t *testing.T) {
	t.Parallel()
	p := pinningHere(true)
	if !p.On() {
		// CI's machine has 2 CPUs and util-linux's taskset (Debian essential).
		t.Fatalf("no pinning here: %s", p.Note)
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal("no sleep in PATH")
	}
	name, args := p.server(sleep, []string{"30"})
	proc, err := start(name, args, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proc.stop)
	// taskset sets the affinity and then execs the server: wait for the exec.
	var got []int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); { // a busy machine may take its time to exec
		if got, err = cpusOf(strconv.Itoa(proc.pid())); err == nil && formatCPUList(got) == p.Servers {
			break
		}
		select {
		case <-proc.exited:
			t.Fatalf("exited: %s", proc.stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	if err := p.check("sleep", proc.pid()); err != nil {
		t.Errorf("%v (affinity read %v)", err, got)
	}
}
