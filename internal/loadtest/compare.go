package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"time"
)

// CompareOptions set up Compare.
type CompareOptions struct {
	Other       string        // the other build's gatehouse binary
	Pairs       int           // pairs of measurements
	PairTime    time.Duration // each side's measurement in a pair (whole seconds)
	Connections int           // keep-alive connections, as the forward-auth round's
	Pin         bool          // pin like the forward-auth round
	Timeout     time.Duration // after the build; 0: none
	Progress    io.Writer     // progress lines; nil: none
}

// CompareReport is Compare's measurement: per pair, this tree's build and
// the other one on the same request.
type CompareReport struct {
	Started     time.Time
	Other       string
	Connections int
	PairTime    time.Duration
	Pinning     Pinning
	This, Them  []Throughput // index i: pair i
}

// Compare measures the build of this tree against another build of
// Gatehouse (a binary, e.g. from an older commit) on the session
// decision the forward-auth round measures (/auth/verify, a valid session,
// roles=admin, asked by a trusted proxy), in pairs: PairTime of one, then
// PairTime of the other, the order swapped every pair, both processes
// pinned like that round and given the same provider and session cookie.
// One pair's ratio moves by ±10 % on a shared machine, whose speed drifts
// over seconds; the median of a few dozen pairs shows a change of a few
// per cent, which a load-test run of three rounds cannot
// (docs/PERFORMANCE.md).
func Compare(ctx context.Context, opts CompareOptions) (*CompareReport, error) {
	if opts.Pairs < 1 || opts.PairTime < time.Second || opts.Connections < 1 {
		return nil, errors.New("compare: pairs, connections and a pair time of at least 1s are required")
	}
	if !fileExists(opts.Other) {
		return nil, fmt.Errorf("compare: %s: no such binary", opts.Other)
	}
	say := progress(opts.Progress)
	rep := &CompareReport{Started: time.Now(), Other: opts.Other, Connections: opts.Connections, PairTime: opts.PairTime,
		Pinning: pinningHere(opts.Pin)}
	say("building this tree's stripped static binary")
	bin, removeBin, err := buildHere(ctx)
	if err != nil {
		return nil, err
	}
	defer removeBin()
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}

	ports, releasePorts, err := reservePorts(4)
	if err != nil {
		return nil, err
	}
	defer releasePorts()
	thisURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	idp, err := startProvider(clientID, []string{thisURL, "http://127.0.0.1:" + strconv.Itoa(ports[2])})
	if err != nil {
		return nil, err
	}
	defer idp.close()
	var targets [2]target // this build, the other
	for i, b := range []string{bin, opts.Other} {
		port, admin := ports[2*i], ports[2*i+1]
		name, args := rep.Pinning.server(b, []string{"-env-file", os.DevNull})
		p, err := start(name, args, gatehouseEnv(port, admin, idp.url))
		if err != nil {
			return nil, err
		}
		defer p.stop()
		addr := "127.0.0.1:" + strconv.Itoa(port)
		if _, err := waitStatus(p, "http://"+addr+"/readyz", http.StatusOK, readyTimeout); err != nil {
			return nil, fmt.Errorf("%s: %w", b, err)
		}
		if err := rep.Pinning.check(b, p.pid()); err != nil {
			return nil, err
		}
		targets[i] = target{name: []string{"this build", "other build"}[i], addr: addr, path: "/auth/verify?roles=admin",
			extra: []string{"X-Original-URL: " + protectedURL, "X-Original-Method: GET"}, pid: p.pid()}
	}
	app, _ := url.Parse(thisURL)
	say("%d pairs of %v, %d connections", opts.Pairs, opts.PairTime, opts.Connections)
	session := newFreshSession(app)
	for pair := range opts.Pairs {
		cookie, err := session.get(ctx)
		if err != nil {
			return nil, err
		}
		targets[0].cookie, targets[1].cookie = cookie, cookie
		var got [2]Throughput
		first, second := pairOrder(pair, 0, 1)
		for _, i := range []int{first, second} {
			if got[i], err = hammer(ctx, targets[i], opts.Connections, 0, opts.PairTime, rep.Pinning); err != nil {
				return nil, err
			}
		}
		rep.This, rep.Them = append(rep.This, got[0]), append(rep.Them, got[1])
		say("pair %d/%d: this build %.0f/s, other build %.0f/s", pair+1, opts.Pairs, got[0].RPS, got[1].RPS)
	}
	return rep, nil
}

// Ratios are this build's requests/s over the other's, per pair.
func (r *CompareReport) Ratios() []float64 {
	q := make([]float64, 0, len(r.This))
	for i := range r.This {
		if i < len(r.Them) && r.Them[i].RPS > 0 {
			q = append(q, r.This[i].RPS/r.Them[i].RPS)
		}
	}
	return q
}

// CPURatios are the other build's server CPU per request over this one's,
// per pair: above 1 when this build does less work per decision.
func (r *CompareReport) CPURatios() []float64 {
	q := make([]float64, 0, len(r.This))
	for i := range r.This {
		if i < len(r.Them) && r.This[i].CPUPerRequest() > 0 {
			q = append(q, float64(r.Them[i].CPUPerRequest())/float64(r.This[i].CPUPerRequest()))
		}
	}
	return q
}

// P99Ratios are the other build's p99 latency over this one's, per pair:
// above 1 when this build's tail is shorter.
func (r *CompareReport) P99Ratios() []float64 {
	q := make([]float64, 0, len(r.This))
	for i := range r.This {
		if i < len(r.Them) && r.This[i].P99 > 0 {
			q = append(q, float64(r.Them[i].P99)/float64(r.This[i].P99))
		}
	}
	return q
}

// spread is the median and the quartiles of q (nearest rank), and how
// many values are above 1.
func spread(q []float64) (median, q1, q3 float64, above int) {
	if len(q) == 0 {
		return 0, 0, 0, 0
	}
	s := slices.Sorted(slices.Values(q))
	n := len(s)
	if n%2 == 1 {
		median = s[n/2]
	} else {
		median = (s[n/2-1] + s[n/2]) / 2
	}
	for _, v := range s {
		if v > 1 {
			above++
		}
	}
	return median, s[(n-1)/4], s[n-1-(n-1)/4], above
}

// Markdown writes the comparison.
func (r *CompareReport) Markdown(w io.Writer) {
	fmt.Fprintf(w, "## This tree against another build, %s\n\n", r.Started.UTC().Format("2006-01-02 15:04 MST"))
	pinning := r.Pinning.String()
	if r.Pinning.On() {
		pinning = fmt.Sprintf("pinned with taskset: wrk on CPU %s, both builds on CPU %s", r.Pinning.Client, r.Pinning.Servers)
	}
	fmt.Fprintf(w, "Other build: %s. GET /auth/verify (valid session, roles=admin), %d connections, %s; %d pairs of %v, the order swapped every pair.\n\n",
		r.Other, r.Connections, pinning, len(r.This), r.PairTime)
	fmt.Fprintln(w, "| per pair | median | quartiles | pairs above 1 |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, row := range []struct {
		name string
		q    []float64
	}{
		{"requests/s, this build / other build", r.Ratios()},
		{"server CPU per request, other build / this build", r.CPURatios()},
		{"p99 latency, other build / this build", r.P99Ratios()},
	} {
		m, q1, q3, above := spread(row.q)
		fmt.Fprintf(w, "| %s | %.3f | %.3f–%.3f | %d of %d |\n", row.name, m, q1, q3, above, len(row.q))
	}
}
