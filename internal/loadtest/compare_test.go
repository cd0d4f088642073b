package loadtest

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestSpread_MedianQuartilesAndPairsAbove(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		q              []float64
		median, q1, q3 float64
		above          int
	}{
		{nil, 0, 0, 0, 0},
		{[]float64{1.2}, 1.2, 1.2, 1.2, 1},
		{[]float64{0.9, 1.1}, 1.0, 0.9, 1.1, 1},
		{[]float64{1.3, 0.8, 1.0, 1.1, 0.9}, 1.0, 0.9, 1.1, 2},
		{[]float64{1.05, 0.95, 1.2, 0.7, 1.1, 1.0, 0.9, 1.3}, 1.025, 0.9, 1.2, 4},
	} {
		m, q1, q3, above := spread(tc.q)
		if m != tc.median || q1 != tc.q1 || q3 != tc.q3 || above != tc.above {
			t.Errorf("spread(%v) = %v, %v–%v, %d above 1; want %v, %v–%v, %d", tc.q, m, q1, q3, above, tc.median, tc.q1, tc.q3, tc.above)
		}
	}
}

func TestCompareReport_RatiosFavourTheFasterBuild(t *testing.T) {
	t.Parallel()
	// This build serves twice the requests at half the CPU per request,
	// with a p99 a third of the other's.
	rep := &CompareReport{
		This: []Throughput{{Requests: 2000, RPS: 2000, ServerCPU: 20 * time.Millisecond, P99: time.Millisecond}},
		Them: []Throughput{{Requests: 1000, RPS: 1000, ServerCPU: 20 * time.Millisecond, P99: 3 * time.Millisecond}},
	}
	if q := rep.Ratios(); len(q) != 1 || q[0] != 2 {
		t.Errorf("Ratios() = %v, want [2]", q)
	}
	if q := rep.CPURatios(); len(q) != 1 || q[0] != 2 {
		t.Errorf("CPURatios() = %v, want [2]", q)
	}
	if q := rep.P99Ratios(); len(q) != 1 || q[0] != 3 {
		t.Errorf("P99Ratios() = %v, want [3]", q)
	}
}

// TestCompare_SameBuildComesOutEven compares the build of this tree with
// itself, as a second binary: every pair measured on both, in swapped
// order, and a median near even. The bound is loose on purpose (a pair
// moves by ±10 % on a shared machine); a comparison that measured the
// wrong target or one side only would miss it by far.
func TestCompare_SameBuildComesOutEven(t *testing.T) {
	ctx := context.Background()
	root, err := moduleRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other, err := buildGatehouse(ctx, root, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Compare(ctx, CompareOptions{Other: other, Pairs: 4, PairTime: time.Second, Connections: 8, Pin: true, Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.This) != 4 || len(rep.Them) != 4 {
		t.Fatalf("measured %d and %d times, want 4 pairs", len(rep.This), len(rep.Them))
	}
	for i := range rep.This {
		if rep.This[i].Requests < 50 || rep.Them[i].Requests < 50 || rep.This[i].ServerCPU <= 0 || rep.Them[i].ServerCPU <= 0 {
			t.Errorf("pair %d: implausible %+v / %+v", i, rep.This[i], rep.Them[i])
		}
	}
	if m, _, _, _ := spread(rep.Ratios()); m < 0.2 || m > 5 {
		t.Errorf("the same build twice: median ratio %.2f, want near 1", m)
	}
	var out bytes.Buffer
	rep.Markdown(&out)
	for _, want := range []string{"| requests/s, this build / other build |", "| server CPU per request, other build / this build |", "4 pairs of 1s"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestCompare_RefusesAMissingBinary(t *testing.T) {
	t.Parallel()
	_, err := Compare(context.Background(), CompareOptions{Other: "/nonexistent/gatehouse", Pairs: 1, PairTime: time.Second, Connections: 1})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/gatehouse") {
		t.Fatalf("err = %v, want one naming the missing binary", err)
	}
}
