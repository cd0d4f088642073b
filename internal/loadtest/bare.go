package loadtest

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// The bare server is this program again, started with these variables: a
// separate process, like Gatehouse, so the two are measured alike.
const (
	bareAddrEnv  = "GATEHOUSE_LOAD_BARE_ADDR"
	bareSizesEnv = "GATEHOUSE_LOAD_BARE_SIZES"
)

// ServeBareIfAsked turns this process into the bare net/http server when
// the load test started it as one; it returns only otherwise. Call it
// first thing in main (and in TestMain of tests that run the load test).
func ServeBareIfAsked() {
	addr := os.Getenv(bareAddrEnv)
	if addr == "" {
		return
	}
	if err := serveBare(addr, os.Getenv(bareSizesEnv)); err != nil {
		fmt.Fprintln(os.Stderr, "bare server:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// serveBare is the ceiling: a plain net/http server whose handler writes a
// prepared body of the size Gatehouse's answer has, with the same kind of
// headers a plain handler sets.
func serveBare(addr, sizes string) error {
	bodies := map[string][]byte{"/healthz": []byte("ok\n")}
	for _, f := range strings.Split(sizes, ",") {
		if n, err := strconv.Atoi(f); err == nil && n > 0 {
			bodies["/body/"+f] = htmlBody(n)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		b, ok := bodies[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		if r.URL.Path == "/healthz" {
			h.Set("Content-Type", "text/plain; charset=utf-8")
		} else {
			h.Set("Content-Type", "text/html; charset=utf-8")
			h.Set("Content-Length", strconv.Itoa(len(b)))
		}
		_, _ = w.Write(b)
	})
	mux.HandleFunc("GET /verify", bareVerify)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile) // -profile's verify-bare-cpu.pprof
	mux.HandleFunc("GET /mallocs", func(w http.ResponseWriter, _ *http.Request) {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		fmt.Fprintf(w, "%d\n", m.Mallocs)
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return srv.Serve(ln)
}

// htmlBody is n bytes of page-like HTML.
func htmlBody(n int) []byte {
	const row = "<tr><td>urn:zitadel:iam:user:resourceowner:name</td><td>Gatehouse Demo</td></tr>\n"
	b := make([]byte, 0, n)
	b = append(b, "<!doctype html><html><body><table>\n"...)
	for len(b) < n {
		b = append(b, row...)
	}
	return b[:n]
}
