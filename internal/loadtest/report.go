package loadtest

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Budgets from the performance issue. (GET /profile has none: a page
// people open a few times a day may cost up to a millisecond.)
const (
	BudgetHealthzRatio = 0.90
	BudgetCPUPerLogin  = time.Millisecond
	BudgetRSS          = 30 << 20
	BudgetStartup      = 150 * time.Millisecond
	BudgetBinary       = 25 << 20
)

// Ratio is a Gatehouse figure over its bare ceiling: the median, smallest
// and largest of N rounds (or pairs).
type Ratio struct {
	Median, Min, Max float64
	N                int
}

// RPSRatio compares requests per second of name and its ceiling, round by
// round (both were measured within seconds of each other).
func (r *Report) RPSRatio(name, bare string) Ratio {
	return r.ratio(name, bare, func(m map[string]Throughput) float64 { return m[name].RPS / m[bare].RPS })
}

// CPURatio is the bare server's CPU per request over Gatehouse's: how much
// of its CPU Gatehouse would leave if the machine were the limit.
func (r *Report) CPURatio(name, bare string) Ratio {
	return r.ratio(name, bare, func(m map[string]Throughput) float64 {
		return float64(m[bare].CPUPerRequest()) / float64(m[name].CPUPerRequest())
	})
}

// ratio is f over the rounds that measured both name and bare.
func (r *Report) ratio(name, bare string, f func(map[string]Throughput) float64) Ratio {
	var v []float64
	for _, m := range r.Rounds {
		_, ok1 := m[name]
		_, ok2 := m[bare]
		if ok1 && ok2 {
			v = append(v, f(m))
		}
	}
	if len(v) == 0 {
		return Ratio{}
	}
	med, _, _, _ := spread(v)
	return Ratio{Median: med, Min: slices.Min(v), Max: slices.Max(v), N: len(v)}
}

// Median is the median of one target's figure over the rounds that
// measured it.
func (r *Report) Median(name string, f func(Throughput) float64) float64 {
	var v []float64
	for _, m := range r.Rounds {
		if t, ok := m[name]; ok {
			v = append(v, f(t))
		}
	}
	med, _, _, _ := spread(v)
	return med
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

// String shows the median with a decimal, so that a miss by a hair does
// not read as the budget itself.
func (q Ratio) String() string {
	return fmt.Sprintf("%.1f%% (median of %d; %.0f–%.0f%%)", 100*q.Median, q.N, 100*q.Min, 100*q.Max)
}

// Markdown writes the results table and the per-round detail.
func (r *Report) Markdown(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "## Gatehouse load test, %s\n\n", r.Started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "Machine: %s, %d CPUs (GOMAXPROCS %d), %s RAM, Linux %s, %s. Load average before %s, after %s.\n",
		m.CPU, m.CPUs, m.GOMAXPROCS, mib(m.MemTotal), m.Kernel, m.GoVersion, m.LoadBefore, m.LoadAfter)
	o := r.Options
	fmt.Fprintf(w, "Run: %d rounds × %v per target (+%v warm-up), %d keep-alive connections; %d logins (%d virtual users); took %v.\n",
		o.Rounds, o.Duration, o.Warmup, o.Connections, o.Logins, o.VUs, r.Finished.Sub(r.Started).Round(time.Second))
	if len(r.Forward.Rounds) > 0 {
		fmt.Fprintf(w, "CPUs: the forward-auth round (/auth/verify, its bare ceiling, oauth2-proxy) and the bearer round %s; every other round unpinned (wrk and the servers share all CPUs).\n", r.Forward.Pinning)
		fmt.Fprintf(w, "The decisions and their bare ceilings: %d pairs per round, the order swapped every pair; their ratios are medians over the pairs.\n", o.Pairs)
	}
	fmt.Fprintln(w)

	fmt.Fprintln(w, "| figure | budget | measured | against budget |")
	fmt.Fprintln(w, "|---|---|---|---|")
	row := func(fig, budget, measured, against string) {
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", fig, budget, measured, against)
	}
	for _, p := range Pairs {
		name, bare := p[0], p[1]
		rps := r.Median(name, func(t Throughput) float64 { return t.RPS })
		p50 := time.Duration(r.Median(name, func(t Throughput) float64 { return float64(t.P50) }))
		p99 := time.Duration(r.Median(name, func(t Throughput) float64 { return float64(t.P99) }))
		q := r.RPSRatio(name, bare)
		budget, against := "—", "ratio to bare "+q.String()
		switch name {
		case Healthz:
			budget, against = fmt.Sprintf("≥ %.0f%% of bare", 100*BudgetHealthzRatio), verdict(q.Median >= BudgetHealthzRatio)+": "+q.String()
		}
		row(name+" requests/s", budget, fmt.Sprintf("%.0f/s, p50 %v, p99 %v (%d B)", rps, p50.Round(time.Microsecond),
			p99.Round(time.Microsecond), r.Bodies[name]), against)
	}
	for _, p := range Pairs {
		name, bare := p[0], p[1]
		cpu := time.Duration(r.Median(name, func(t Throughput) float64 { return float64(t.CPUPerRequest()) }))
		bcpu := time.Duration(r.Median(bare, func(t Throughput) float64 { return float64(t.CPUPerRequest()) }))
		row(name+" server CPU per request", "—", fmt.Sprintf("%v (bare %v)", cpu.Round(100*time.Nanosecond), bcpu.Round(100*time.Nanosecond)),
			"bare/Gatehouse "+r.CPURatio(name, bare).String())
	}
	r.forwardRows(row)
	r.bearerRows(row)
	l := r.Logins
	row("RP-side CPU per login (sign-in POST + callback, whole process)", "≤ 1 ms", l.CPUPerLogin().Round(10*time.Microsecond).String(),
		verdict(l.CPUPerLogin() <= BudgetCPUPerLogin))
	row("logins per second (cookie store)", "—", fmt.Sprintf("%.0f/s (%d logins in %v)", l.PerSec, l.Count, l.Elapsed.Round(time.Millisecond)),
		fmt.Sprintf("%.1f%% of login wall time inside Gatehouse", 100*l.ShareInGatehouse()))
	row("RSS after start", "—", mib(r.RSSStart), "")
	row(fmt.Sprintf("RSS after %d cookie-store logins", l.Count), "≤ 30 MiB", mib(r.RSSAfterAll), verdict(r.RSSAfterAll <= BudgetRSS))
	row("RSS growth with session count (cookie store)", "none", fmt.Sprintf("%s after %d logins → %s after %d", mib(r.RSSAfterSome), r.LoginsSome, mib(r.RSSAfterAll), l.Count),
		fmt.Sprintf("%+.1f MiB", float64(r.RSSAfterAll-r.RSSAfterSome)/(1<<20)))
	switch {
	case r.RedisNote != "":
		row("RSS with the Redis store", "—", "not measured", r.RedisNote)
	case r.RedisLogins.Count > 0:
		row(fmt.Sprintf("RSS with the Redis store: start → after %d logins", r.RedisLogins.Count), "—",
			mib(r.RedisRSSStart)+" → "+mib(r.RedisRSSAfter), fmt.Sprintf("%.0f logins/s, CPU per login %v", r.RedisLogins.PerSec,
				r.RedisLogins.CPUPerLogin().Round(10*time.Microsecond)))
	}
	if r.AllocsNote != "" {
		row("allocations per GET /profile (binary)", "—", "not measured", r.AllocsNote)
	} else {
		row("allocations per GET /profile (binary, net/http included)", "—", fmt.Sprintf("%.0f", r.ProfileAllocs),
			fmt.Sprintf("bare server with the same body: %.0f", r.BareAllocs))
	}
	sm := median(r.Startup)
	row("exec to /readyz 200 (local provider)", "≤ 150 ms", fmt.Sprintf("median %v of %d (%s)", sm.Round(time.Millisecond), len(r.Startup), durations(r.Startup)),
		verdict(sm <= BudgetStartup))
	static := "static"
	if !r.BinaryStatic {
		static = "dynamically linked"
	}
	row("binary size (CGO_ENABLED=0 -tags production,grpcnotrace -trimpath -ldflags \"-s -w\", as the Dockerfile)", "≤ 25 MB", fmt.Sprintf("%.1f MB (%d bytes, %s)", float64(r.BinaryBytes)/1e6, r.BinaryBytes, static),
		verdict(r.BinaryBytes <= BudgetBinary))

	fmt.Fprintln(w, "\nPer round (requests/s, p50, p99, server CPU per request):")
	roundTable(w, "round", r.Rounds, "", BareHealthz, Healthz, BareLanding, Landing, LandingIn, BareProfile, Profile)
	if len(r.Forward.Rounds)+len(r.Bearer.Rounds) > 0 {
		fmt.Fprintf(w, "\nPer pair of the decision rounds (%d per round; the same figures):\n", r.Options.Pairs)
	}
	roundTable(w, "pair", r.Forward.Rounds, fmt.Sprintf(" (%d connections)", r.Forward.Connections), BareVerify, Verify, OAuth2Auth)
	roundTable(w, "pair", r.Bearer.Rounds, fmt.Sprintf(" (%d connections)", r.Bearer.Connections), BareBearerJWT, BearerJWT, BareBearerOpaque, BearerOpaque)
}

// roundTable writes a table with a column per round (label 1, label 2,
// ...) and a line per target the rounds measured (name, then suffix):
// each round's requests/s, p50, p99 and server CPU, or "—".
func roundTable(w io.Writer, label string, rounds []map[string]Throughput, suffix string, names ...string) {
	if len(rounds) == 0 {
		return
	}
	fmt.Fprintf(w, "\n| target |")
	for i := range rounds {
		fmt.Fprintf(w, " %s %d |", label, i+1)
	}
	fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---|", len(rounds)))
	for _, name := range names {
		if _, ok := rounds[0][name]; !ok {
			continue
		}
		fmt.Fprintf(w, "| %s%s |", name, suffix)
		for _, m := range rounds {
			t, ok := m[name]
			if !ok {
				fmt.Fprint(w, " — |")
				continue
			}
			fmt.Fprintf(w, " %.0f/s, %v, %v, %v |", t.RPS, t.P50.Round(time.Microsecond), t.P99.Round(time.Microsecond), t.CPUPerRequest().Round(100*time.Nanosecond))
		}
		fmt.Fprintln(w)
	}
}

func durations(ds []time.Duration) string {
	var s []string
	for _, d := range ds {
		s = append(s, d.Round(time.Millisecond).String())
	}
	return strings.Join(s, ", ")
}
