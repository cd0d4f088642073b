package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/internal/buildinfo"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/forward"
	"github.com/gatehouse/gatehouse/internal/server"
	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/telemetry"
)

const usage = `Usage:
  gatehouse [flags]          run the service (configured from the environment and ./.env)
  gatehouse -dev             run with an embedded development identity provider (never in production)
  gatehouse healthcheck      exit 0 if the local /healthz answers 200 (for container health checks)
  gatehouse version          print the version, commit, Go version and build tags

Flags:
`

// run is the whole program: args, environment and output are parameters so
// tests can run it in-process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	info := buildinfo.Read(version, commit)
	if len(args) > 1 && args[1] == "healthcheck" {
		return healthcheck(ctx, getenv, stderr)
	}
	if len(args) > 1 && args[1] == "version" {
		fmt.Fprint(stdout, info.String())
		return nil
	}
	fs := flag.NewFlagSet("gatehouse", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	dev := fs.Bool("dev", false, "start an embedded development identity provider with demo users and point the app at it")
	devAddr := fs.String("dev-idp-addr", "127.0.0.1:3001", "listen address of the development identity provider (with -dev)")
	devKey := fs.Bool("dev-key", false, "with -dev: the development provider generates a ZITADEL application key and Gatehouse authenticates with it (private_key_jwt) instead of as a public PKCE client")
	devListenAll := fs.Bool("dev-listen-all", false, "with -dev: the app listens on all interfaces, not loopback (in a container, for probes); the provider stays on loopback")
	showVersion := fs.Bool("version", false, "print the version, commit, Go version and build tags, and exit")
	envFile := fs.String("env-file", ".env", "dotenv file to read (the real environment wins); missing is fine")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return exitCode(2)
	}
	if *showVersion {
		fmt.Fprint(stdout, info.String())
		return nil
	}
	if *devListenAll && !*dev {
		fmt.Fprintln(stderr, "gatehouse: -dev-listen-all needs -dev")
		return exitCode(2)
	}

	dotenv, err := config.ReadDotenvFile(*envFile)
	if err != nil {
		fmt.Fprintln(stderr, "gatehouse:", err)
		return exitCode(2)
	}
	lookup := func(k string) (string, bool) {
		v := getenv(k)
		return v, v != ""
	}

	var overrides config.Overrides
	var idp *devProvider
	if *devKey && !*dev {
		fmt.Fprintln(stderr, "gatehouse: -dev-key needs -dev (for your ZITADEL, set ZITADEL_KEY_FILE or ZITADEL_KEY)")
		return exitCode(2)
	}
	if *dev {
		appHost := "127.0.0.1" // as server.Addr for a loopback-only app
		if *devListenAll {
			appHost = ""
		}
		idp, overrides, err = startDevProvider(*devAddr, appHost, *devKey, lookup, dotenv, stderr)
		if err != nil {
			fmt.Fprintln(stderr, "gatehouse:", err)
			return exitCode(1)
		}
		defer idp.close()
	}

	cfg, err := config.Load(ctx, lookup, dotenv, overrides)
	if err != nil {
		var problems config.Problems
		if errors.As(err, &problems) {
			fmt.Fprintln(stderr, "gatehouse: refusing to start, configuration problems:")
			for _, p := range problems {
				fmt.Fprintln(stderr, "  "+p)
			}
			return exitCode(2)
		}
		fmt.Fprintln(stderr, "gatehouse:", err)
		return exitCode(2)
	}

	log := newLogger(cfg, stdout)
	redis.SetLogger(session.RedisLogger(log)) // the Redis client's own messages go to our structured log
	if *dev {
		go idp.serve()
		idp.printBanner(stdout, cfg)
	}

	tel, err := startTelemetry(ctx, dotenv, getenv, log, info.Version)
	if err != nil {
		fmt.Fprintln(stderr, "gatehouse: refusing to start, OpenTelemetry configuration:", err)
		return exitCode(2)
	}
	defer flushTelemetry(ctx, tel, log)
	if err := telemetry.RegisterBuildInfo(tel.MeterProvider(), info.Labels()); err != nil {
		return fmt.Errorf("start: %w", err)
	}

	app, err := server.New(cfg, server.Options{Logger: log, Telemetry: tel})
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	var ln net.Listener
	if idp != nil {
		ln = idp.appListener()
	}
	if ln == nil {
		if ln, err = net.Listen("tcp", server.Addr(cfg, *dev && !*devListenAll)); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
	}
	if cfg.AdminAddr != "" && cfg.AdminAddr != "off" {
		adminLn, err := net.Listen("tcp", cfg.AdminAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("admin listener (ADMIN_ADDR): %w", err)
		}
		admin := app.AdminServer()
		go func() { _ = admin.Serve(adminLn) }()
		defer admin.Close() // after the public listener has drained
		log.Info("admin listening", "addr", adminLn.Addr().String(), "paths", "/metrics /healthz /readyz")
	}
	log.Info("gatehouse starting", append(info.LogAttrs(), "issuer", cfg.Issuer, "session_store", cfg.SessionStore,
		"client_auth", cfg.ClientAuthMethod())...)
	return app.Run(ctx, ln)
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "text" {
		return slog.New(telemetry.LogHandler(slog.NewTextHandler(w, opts)))
	}
	return slog.New(telemetry.LogHandler(slog.NewJSONHandler(w, opts)))
}

// startTelemetry sets OpenTelemetry up from the standard OTEL_* variables
// (telemetry.Setup, which also installs the globals zitadel/oidc reads).
// The SDK reads the process environment, so OTEL_* lines of the .env file
// are copied there first (the real environment still wins).
func startTelemetry(ctx context.Context, dotenv map[string]string, getenv func(string) string, log *slog.Logger, version string) (*telemetry.Telemetry, error) {
	if err := exportDotenvOTel(dotenv, getenv); err != nil {
		return nil, err
	}
	tel, err := telemetry.Setup(ctx, telemetry.SetupOptions{ServiceVersion: version, Prometheus: true, Logger: log, SpanPath: forward.SpanPath})
	if err != nil {
		return nil, err
	}
	log.Info("telemetry", "tracing", tel.Tracing())
	return tel, nil
}

// exportDotenvOTel copies the .env file's OTEL_* settings into the process
// environment, where the OpenTelemetry SDK reads them, unless the
// environment already has them.
func exportDotenvOTel(dotenv map[string]string, getenv func(string) string) error {
	for k, v := range dotenv {
		if _, set := os.LookupEnv(k); strings.HasPrefix(k, "OTEL_") && v != "" && !set && getenv(k) == "" {
			if err := os.Setenv(k, v); err != nil {
				return fmt.Errorf("%s from .env: %w", k, err)
			}
		}
	}
	return nil
}

// flushTelemetry sends what is still buffered when the process stops.
func flushTelemetry(ctx context.Context, tel *telemetry.Telemetry, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := tel.Shutdown(ctx); err != nil {
		log.Warn("opentelemetry: flush on shutdown failed", "error", err.Error())
	}
}

// healthcheck asks the local /healthz, for images without a shell or curl.
// The port is found as config finds it: the environment, else ./.env (the
// server's default -env-file), else 3000.
func healthcheck(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
	port := strings.TrimSpace(getenv("PORT"))
	if port == "" {
		dotenv, err := config.ReadDotenvFile(".env")
		if err != nil {
			fmt.Fprintln(stderr, "healthcheck:", err)
			return exitCode(1)
		}
		port = strings.TrimSpace(dotenv["PORT"])
	}
	if port == "" {
		port = "3000"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+port+"/healthz", nil)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return exitCode(1)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return exitCode(1)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(stderr, "healthcheck: /healthz answered", resp.StatusCode)
		return exitCode(1)
	}
	return nil
}
