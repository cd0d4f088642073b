package loadtest

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// SoakReport is everything one soak measured.
type SoakReport struct {
	Started, Finished time.Time
	Machine           Machine
	Options           SoakOptions
	Windows           []Window
	Stores            []StoreReport
	Provider          struct{ Refreshes, CodeExchanges int64 } // grants the provider answered
	Checks            []string                                 // the bounds this run broke (Check)
}

// StoreReport is one stack's figures (Redis or cookie store).
type StoreReport struct {
	Store    string
	Requests int
	// ByKind counts requests by kind and outcome (Outcome*).
	ByKind  map[string]map[string]int
	Latency map[string]Latency // by kind, over the requests that got an answer
	// Errors outside every fault window (anything but a working answer
	// or a lost session, which is counted apart), and a few of them.
	ErrorsOutside int
	ErrorExamples []string
	Windows       []WindowCount // as SoakReport.Windows
	SignIns       int           // sign-ins completed
	SignOuts      int           // sessions whose deletion the user asked for
	// Sessions lost: a protected page sent a signed-in user to sign in.
	Lost, LostInProviderWindows int
	// RefreshEnded counts the sessions Gatehouse ended because a token
	// refresh failed, by reason (from its log).
	RefreshEnded              map[string]int
	Processes                 []*procLife
	Retries, BalancerFailures int64 // requests the balancer sent again / answered 502 itself
}

// WindowCount is what one store's users met in one fault window.
type WindowCount struct{ Requests, Status5xx, OtherErrors int }

// Latency of one request kind.
type Latency struct {
	N             int
	P50, P99, Max time.Duration
}

// Request outcomes.
const (
	OutcomeOK       = "ok"
	OutcomeLost     = "session lost"
	Outcome429      = "429"
	Outcome4xx      = "other 4xx"
	Outcome5xx      = "5xx"
	OutcomeNoAnswer = "no answer"
)

func outcome(s soakSample) string {
	switch {
	case s.lost:
		return OutcomeLost
	case s.Err != nil || s.Status == 0:
		return OutcomeNoAnswer
	case s.Status == 200 || s.Status == 302 || s.Status == 303:
		return OutcomeOK
	case s.Status == 429:
		return Outcome429
	case s.Status >= 500:
		return Outcome5xx
	}
	return Outcome4xx
}

// report counts one stack's samples against the fault windows.
func (s *soakStack) report(begin time.Time, windows []Window, ttl time.Duration) StoreReport {
	r := StoreReport{Store: s.store, ByKind: map[string]map[string]int{}, Latency: map[string]Latency{},
		Windows: make([]WindowCount, len(windows)), RefreshEnded: map[string]int{}}
	inWindow := func(from, to time.Time, w Window) bool {
		return to.After(begin.Add(w.Start)) && from.Before(begin.Add(w.Back+windowGrace))
	}
	durations := map[string][]time.Duration{}
	for _, v := range s.vus {
		r.SignIns += v.signIns
		r.SignOuts += v.signOuts
		for _, smp := range v.samples {
			r.Requests++
			out := outcome(smp)
			if r.ByKind[smp.Kind] == nil {
				r.ByKind[smp.Kind] = map[string]int{}
			}
			r.ByKind[smp.Kind][out]++
			if out != OutcomeNoAnswer {
				durations[smp.Kind] = append(durations[smp.Kind], smp.End.Sub(smp.Start))
			}
			inside, inProvider := false, false
			for i, w := range windows {
				if !inWindow(smp.Start, smp.End, w) {
					continue
				}
				inside = true
				inProvider = inProvider || w.Fault == FaultProvider
				r.Windows[i].Requests++
				switch {
				case out == Outcome5xx:
					r.Windows[i].Status5xx++
				case out != OutcomeOK && out != OutcomeLost:
					r.Windows[i].OtherErrors++
				}
			}
			if out == OutcomeLost {
				r.Lost++
				if inProvider {
					r.LostInProviderWindows++
				}
			}
			if !inside && out != OutcomeOK && out != OutcomeLost {
				r.ErrorsOutside++
				if len(r.ErrorExamples) < 10 {
					r.ErrorExamples = append(r.ErrorExamples, fmt.Sprintf("%s at %v: %s (status %d, %v)",
						smp.Kind, smp.Start.Sub(begin).Round(time.Millisecond), out, smp.Status, smp.Err))
				}
			}
		}
	}
	for kind, ds := range durations {
		slices.Sort(ds)
		r.Latency[kind] = Latency{N: len(ds), P50: ds[len(ds)/2], P99: ds[min(len(ds)-1, len(ds)*99/100)], Max: ds[len(ds)-1]}
	}
	s.logs.mu.Lock()
	for _, e := range s.logs.refreshEnded {
		r.RefreshEnded[e.Reason]++
	}
	s.logs.mu.Unlock()
	s.mu.Lock()
	r.Processes = slices.Clone(s.lives)
	s.mu.Unlock()
	r.Retries, r.BalancerFailures = s.bal.retries.Load(), s.bal.failures.Load()
	return r
}

// Soak bounds.
const (
	// A process measured over at least this long must not grow more than
	// the slack below between its start (after warm-up) and end figures.
	leakSpan          = 20 * time.Second
	goroutineSlack    = 15       // goroutines: plus a fifth of the start
	rssSlack          = 16 << 20 // bytes: plus a quarter of the start
	sigtermWindowMax  = 20 * time.Second
	providerWindowMax = providerDown + 3*time.Second
	redisWindowMax    = redisDown + 10*time.Second
)

// Check lists the bounds the run broke: none is a pass.
//
// Sessions: a page view that finds its session gone, while the user did
// not sign out, is a lost session, and none may be lost with either store:
// a session ends only on the provider's word or the user's, never because
// the provider, Redis or an instance restarted. Nor may Gatehouse end one
// after a failed refresh (its own log line): the soak's provider refuses
// no refresh.
func (rep *SoakReport) Check() []string {
	var bad []string
	fail := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	seen := map[string]int{}
	for _, w := range rep.Windows {
		seen[w.Fault]++
		max := map[string]time.Duration{FaultProvider: providerWindowMax, FaultRedis: redisWindowMax, FaultSIGTERM: sigtermWindowMax}[w.Fault]
		if w.Length() > max || w.Note != "" {
			fail("%s at %v: back after %v (at most %v) %s", w.Fault, w.Start.Round(time.Millisecond), w.Length().Round(time.Millisecond), max, w.Note)
		}
	}
	for _, f := range []string{FaultProvider, FaultRedis, FaultSIGTERM} {
		if seen[f] == 0 {
			fail("no %s happened: the run is too short for its cycle", f)
		}
	}
	if rep.Provider.Refreshes == 0 {
		fail("the provider answered no refresh: refreshes were not exercised")
	}
	for _, s := range rep.Stores {
		for _, k := range []string{KindSignIn, KindProvider, KindCallback, KindPage, KindPageRefresh, KindSignOut, KindSignedOut} {
			if s.ByKind[k][OutcomeOK] == 0 {
				fail("%s store: no %q request succeeded", s.Store, k)
			}
		}
		if s.ErrorsOutside > 0 {
			fail("%s store: %d errors outside the fault windows, e.g. %s", s.Store, s.ErrorsOutside, strings.Join(s.ErrorExamples, "; "))
		}
		if len(s.RefreshEnded) > 0 {
			fail("%s store: Gatehouse ended sessions after a failed refresh (by reason: %s)", s.Store, reasons(s.RefreshEnded))
		}
		if s.Lost > 0 {
			fail("%s store: %d sessions lost (%d of them during provider restarts)", s.Store, s.Lost, s.LostInProviderWindows)
		}
		for _, p := range s.Processes {
			if p.Start == nil || p.End == nil || p.End.At-p.Start.At < leakSpan {
				continue
			}
			if p.End.Goroutines > p.Start.Goroutines+p.Start.Goroutines/5+goroutineSlack {
				fail("%s: goroutines %d → %d over %v: a leak", p.Name, p.Start.Goroutines, p.End.Goroutines, (p.End.At - p.Start.At).Round(time.Second))
			}
			if p.End.RSS > p.Start.RSS+p.Start.RSS/4+rssSlack {
				fail("%s: RSS %.1f → %.1f MiB over %v: a leak", p.Name, mebi(p.Start.RSS), mebi(p.End.RSS), (p.End.At - p.Start.At).Round(time.Second))
			}
		}
	}
	return bad
}

func mebi(b int64) float64 { return float64(b) / (1 << 20) }

// Markdown writes the report as docs/RELIABILITY.md shows it.
func (rep *SoakReport) Markdown(w io.Writer) {
	o := rep.Options
	fmt.Fprintf(w, "Soak of %v (%s → %s) on %s, %d CPUs, Go %s, load %s → %s.\n",
		o.Duration, rep.Started.Format("2006-01-02 15:04:05"), rep.Finished.Format("15:04:05"),
		rep.Machine.CPU, rep.Machine.CPUs, rep.Machine.GoVersion, rep.Machine.LoadBefore, rep.Machine.LoadAfter)
	fmt.Fprintf(w, "%d virtual users per store, each from its own loopback address; faults every %v; access tokens live %v "+
		"(a refresh every ~%v of a session); the provider answered %d code exchanges and %d refreshes.\n\n",
		o.VUs, o.Cycle, o.TokenTTL, (o.TokenTTL - refreshSkew + time.Second).Round(time.Second), rep.Provider.CodeExchanges, rep.Provider.Refreshes)

	fmt.Fprintf(w, "| fault window | start | length |")
	for _, s := range rep.Stores {
		fmt.Fprintf(w, " %s: requests / 5xx / other errors |", s.Store)
	}
	fmt.Fprintf(w, "\n|---|---|---|")
	for range rep.Stores {
		fmt.Fprintf(w, "---|")
	}
	fmt.Fprintln(w)
	for i, win := range rep.Windows {
		fmt.Fprintf(w, "| %s | %v | %v |", win.Fault, win.Start.Round(100*time.Millisecond), win.Length().Round(10*time.Millisecond))
		for _, s := range rep.Stores {
			c := s.Windows[i]
			fmt.Fprintf(w, " %d / %d / %d |", c.Requests, c.Status5xx, c.OtherErrors)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "\n(A window runs from the fault to the part being back, plus %v; a request overlapping it is inside.)\n\n", windowGrace)

	fmt.Fprintf(w, "| | %s |\n|---|%s\n", storeNames(rep, " | "), strings.Repeat("---|", len(rep.Stores)))
	row := func(name string, f func(StoreReport) string) {
		fmt.Fprintf(w, "| %s |", name)
		for _, s := range rep.Stores {
			fmt.Fprintf(w, " %s |", f(s))
		}
		fmt.Fprintln(w)
	}
	row("requests", func(s StoreReport) string { return fmt.Sprint(s.Requests) })
	row("errors outside the fault windows", func(s StoreReport) string { return fmt.Sprint(s.ErrorsOutside) })
	row("sign-ins completed / sign-outs (deletion asked for)", func(s StoreReport) string { return fmt.Sprintf("%d / %d", s.SignIns, s.SignOuts) })
	row("sessions lost (of them during provider restarts)", func(s StoreReport) string {
		return fmt.Sprintf("%d (%d)", s.Lost, s.LostInProviderWindows)
	})
	row("sessions Gatehouse ended after a failed refresh, by reason", func(s StoreReport) string { return reasons(s.RefreshEnded) })
	row("balancer: requests sent again / answered 502", func(s StoreReport) string {
		return fmt.Sprintf("%d / %d", s.Retries, s.BalancerFailures)
	})
	fmt.Fprintln(w)

	fmt.Fprintf(w, "| store | kind | ok | session lost | 429 | other 4xx | 5xx | no answer | p50 | p99 | max |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range rep.Stores {
		for _, k := range []string{KindSignIn, KindProvider, KindCallback, KindPage, KindPageRefresh, KindSignOut, KindSignedOut} {
			c, l := s.ByKind[k], s.Latency[k]
			fmt.Fprintf(w, "| %s | %s | %d | %d | %d | %d | %d | %d | %s | %s | %s |\n", s.Store, k,
				c[OutcomeOK], c[OutcomeLost], c[Outcome429], c[Outcome4xx], c[Outcome5xx], c[OutcomeNoAnswer], ms(l.P50), ms(l.P99), ms(l.Max))
		}
	}
	fmt.Fprintln(w)

	fmt.Fprintf(w, "| process | lived | RSS after warm-up → end | goroutines after warm-up → end | RSS / heap in use (MiB) / goroutines each cycle |\n|---|---|---|---|---|\n")
	for _, s := range rep.Stores {
		for _, p := range s.Processes {
			rss, g := "–", "–"
			if p.Start != nil && p.End != nil {
				rss = fmt.Sprintf("%.1f → %.1f MiB", mebi(p.Start.RSS), mebi(p.End.RSS))
				g = fmt.Sprintf("%d → %d", p.Start.Goroutines, p.End.Goroutines)
			}
			var series []string
			for _, x := range p.Series {
				series = append(series, fmt.Sprintf("%.1f / %.1f / %d", mebi(x.RSS), mebi(x.HeapInuse), x.Goroutines))
			}
			trend := strings.Join(series, " → ")
			if trend == "" {
				trend = "–"
			}
			fmt.Fprintf(w, "| %s | %v – %v | %s | %s | %s |\n", p.Name, p.StartedAt.Round(time.Second), p.EndedAt.Round(time.Second), rss, g, trend)
		}
	}
	fmt.Fprintln(w)
	if len(rep.Checks) == 0 {
		fmt.Fprintln(w, "Bounds: all held.")
	} else {
		fmt.Fprintln(w, "Bounds broken:")
		for _, c := range rep.Checks {
			fmt.Fprintln(w, "- "+c)
		}
	}
}

func storeNames(rep *SoakReport, sep string) string {
	var names []string
	for _, s := range rep.Stores {
		names = append(names, s.Store+" store")
	}
	return strings.Join(names, sep)
}

func reasons(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for k, n := range m {
		parts = append(parts, fmt.Sprintf("%s: %d", k, n))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

func ms(d time.Duration) string {
	if d == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}
