package deploycheck

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction after joining continuation lines.
type instruction struct {
	Line int    // 1-based line where it starts
	Cmd  string // upper-cased keyword: FROM, RUN, USER, ...
	Args string // the rest, trimmed
}

// stage is a build stage: its FROM and the instructions after it.
type stage struct {
	From         instruction
	Image        string // FROM image after ARG expansion (no --platform, no AS)
	Name         string // AS name, lower-cased
	Instructions []instruction
}

type dockerfile struct {
	GlobalArgs map[string]string // ARGs before the first FROM, with their defaults
	Stages     []stage
}

// parseDockerfile is a deliberately small parser: comments, blank lines, parser
// directives and backslash continuations; heredocs are not supported (none are used).
func parseDockerfile(src string) (*dockerfile, error) {
	var ins []instruction
	lines := strings.Split(strings.ReplaceAll(src, "\r\n", "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		start := i
		line := strings.TrimSpace(lines[i])
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		for strings.HasSuffix(line, "\\") && i+1 < len(lines) {
			i++
			next := strings.TrimSpace(lines[i])
			if strings.HasPrefix(next, "#") {
				continue // comment lines inside a continuation are dropped
			}
			line = strings.TrimSuffix(line, "\\") + " " + next
		}
		if strings.Contains(line, "<<") && strings.HasPrefix(strings.ToUpper(line), "RUN") {
			return nil, fmt.Errorf("line %d: heredocs are not supported by this checker", start+1)
		}
		cmd, args, _ := strings.Cut(line, " ")
		ins = append(ins, instruction{Line: start + 1, Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args)})
	}
	df := &dockerfile{GlobalArgs: map[string]string{}}
	for _, in := range ins {
		if in.Cmd == "FROM" {
			st, err := parseFrom(in, df.GlobalArgs)
			if err != nil {
				return nil, err
			}
			df.Stages = append(df.Stages, st)
			continue
		}
		if len(df.Stages) == 0 {
			if in.Cmd != "ARG" {
				return nil, fmt.Errorf("line %d: %s before the first FROM", in.Line, in.Cmd)
			}
			name, def, _ := strings.Cut(in.Args, "=")
			df.GlobalArgs[strings.TrimSpace(name)] = strings.Trim(strings.TrimSpace(def), `"`)
			continue
		}
		last := &df.Stages[len(df.Stages)-1]
		last.Instructions = append(last.Instructions, in)
	}
	if len(df.Stages) == 0 {
		return nil, fmt.Errorf("no FROM instruction")
	}
	return df, nil
}

var argRef = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)

func parseFrom(in instruction, args map[string]string) (stage, error) {
	var fields []string
	for _, f := range strings.Fields(in.Args) {
		if strings.HasPrefix(f, "--") { // --platform=...
			continue
		}
		fields = append(fields, f)
	}
	if len(fields) != 1 && !(len(fields) == 3 && strings.EqualFold(fields[1], "AS")) {
		return stage{}, fmt.Errorf("line %d: cannot parse FROM %q", in.Line, in.Args)
	}
	image := argRef.ReplaceAllStringFunc(fields[0], func(m string) string {
		return args[argRef.FindStringSubmatch(m)[1]]
	})
	st := stage{From: in, Image: image}
	if len(fields) == 3 {
		st.Name = strings.ToLower(fields[2])
	}
	return st, nil
}

// rules says which checks apply to a file.
type rules struct {
	requireHealthcheck bool // the production image must carry a HEALTHCHECK
	requireStaticBuild bool // its build must be CGO_ENABLED=0, -trimpath, -s -w, the production tags
}

var digestRef = regexp.MustCompile(`@sha256:[a-f0-9]{64}$`)

// check returns every rule violation in the Dockerfile source.
func check(src string, r rules) []string {
	df, err := parseDockerfile(src)
	if err != nil {
		return []string{err.Error()}
	}
	var errs []string
	bad := func(line int, format string, a ...any) {
		errs = append(errs, fmt.Sprintf("line %d: ", line)+fmt.Sprintf(format, a...))
	}
	stageNames := map[string]bool{}
	for _, st := range df.Stages {
		img := st.Image
		switch {
		case img == "":
			bad(st.From.Line, "FROM image is empty (ARG without default?)")
		case strings.EqualFold(img, "scratch") || stageNames[strings.ToLower(img)]:
			// scratch or an earlier stage: nothing to pin
		default:
			nameTag := strings.SplitN(img, "@", 2)[0]
			if slash := strings.LastIndex(nameTag, "/"); strings.Contains(nameTag[slash+1:], ":") {
				if tag := nameTag[strings.LastIndex(nameTag, ":")+1:]; tag == "latest" {
					bad(st.From.Line, "base image %q uses the latest tag", img)
				}
			}
			if !digestRef.MatchString(img) {
				bad(st.From.Line, "base image %q is not pinned by digest (@sha256:...)", img)
			}
		}
		if st.Name != "" {
			stageNames[st.Name] = true
		}
		for _, in := range st.Instructions {
			switch in.Cmd {
			case "ENTRYPOINT", "CMD":
				if !isExecForm(in.Args) {
					bad(in.Line, "%s must use the exec (JSON array) form, got %q", in.Cmd, in.Args)
				}
			case "HEALTHCHECK":
				if hc := healthcheckCommand(in.Args); hc != "NONE" && !isExecForm(strings.TrimSpace(strings.TrimPrefix(hc, "CMD"))) {
					bad(in.Line, "HEALTHCHECK must use CMD in exec (JSON array) form, got %q", in.Args)
				}
			}
		}
	}

	final := df.Stages[len(df.Stages)-1]
	user, userLine := "", final.From.Line
	hasHealth, healthNone := false, false
	for _, in := range final.Instructions {
		switch in.Cmd {
		case "USER":
			user, userLine = in.Args, in.Line
		case "HEALTHCHECK":
			hasHealth = true
			healthNone = healthcheckCommand(in.Args) == "NONE"
		}
	}
	name := strings.SplitN(user, ":", 2)[0]
	switch {
	case user == "":
		bad(final.From.Line, "final stage has no USER: the image would run as root")
	case name == "root" || name == "0" || argRef.MatchString(name):
		bad(userLine, "final stage USER %q is not a fixed non-root user", user)
	}
	if r.requireHealthcheck && (!hasHealth || healthNone) {
		bad(final.From.Line, "final stage has no HEALTHCHECK")
	}
	if r.requireStaticBuild {
		var build strings.Builder
		for _, st := range df.Stages[:len(df.Stages)-1] {
			for _, in := range st.Instructions {
				build.WriteString(in.Cmd + " " + in.Args + "\n")
			}
		}
		b := build.String()
		for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-s -w", "go build"} {
			if !strings.Contains(b, want) {
				bad(final.From.Line, "build stages lack %q (static, reproducible binary)", want)
			}
		}
		// The production build leaves out the development identity provider
		// and gRPC's debug pages (both link html/template, which keeps every
		// method of every type in the binary: +10 MB).
		if !strings.Contains(b, "-tags production,grpcnotrace") {
			bad(final.From.Line, "build stages lack %q (no development provider in the image)", "-tags production,grpcnotrace")
		}
	}
	return errs
}

// healthcheckCommand strips HEALTHCHECK options and returns "NONE" or "CMD ...".
func healthcheckCommand(args string) string {
	rest := strings.TrimSpace(args)
	for strings.HasPrefix(rest, "--") {
		_, after, _ := strings.Cut(rest, " ")
		rest = strings.TrimSpace(after)
	}
	return rest
}

// isExecForm reports whether s is a JSON array of strings with at least one element.
func isExecForm(s string) bool {
	var v []string
	return json.Unmarshal([]byte(strings.TrimSpace(s)), &v) == nil && len(v) > 0
}

func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func TestDockerfileRules(t *testing.T) {
	for _, tc := range []struct {
		file  string
		rules rules
	}{
		{"Dockerfile", rules{requireHealthcheck: true, requireStaticBuild: true}},
		{"Dockerfile.dev", rules{}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join(repoRoot(t), tc.file))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range check(string(src), tc.rules) {
				t.Errorf("%s %s", tc.file, e)
			}
		})
	}
}

func TestDockerfileProductionShape(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df, err := parseDockerfile(string(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(df.Stages) < 2 {
		t.Fatalf("want a multi-stage build, got %d stage(s)", len(df.Stages))
	}
	if img := df.Stages[0].Image; !strings.HasPrefix(img, "golang:1.26") {
		t.Errorf("build stage is %q, want golang:1.26", img)
	}
	// Multi-arch without emulation: the build stage runs on the builder's platform and
	// cross-compiles for the target one (docker buildx --platform linux/amd64,linux/arm64).
	if from := df.Stages[0].From.Args; !strings.HasPrefix(from, "--platform=$BUILDPLATFORM ") {
		t.Errorf("build stage FROM %q does not run on $BUILDPLATFORM", from)
	}
	var build string
	for _, in := range df.Stages[0].Instructions {
		if in.Cmd == "RUN" && strings.Contains(in.Args, "go build") {
			build = in.Args
		}
	}
	for _, want := range []string{"GOOS=${TARGETOS}", "GOARCH=${TARGETARCH}", "-X main.version=${VERSION}", "-X main.commit=${REVISION}"} {
		if !strings.Contains(build, want) {
			t.Errorf("go build lacks %s: %q", want, build)
		}
	}
	final := df.Stages[len(df.Stages)-1]
	// Pinned by digest (TestDockerfileRules) to distroless static nonroot: scripts/release.sh
	// reads this very line as its default base, so releases and `docker build` share the pin.
	if !strings.HasPrefix(final.Image, "gcr.io/distroless/static-debian12:nonroot@") {
		t.Errorf("final stage is %q, want distroless static-debian12:nonroot", final.Image)
	}
	want := map[string]string{
		"ENTRYPOINT":  `["/gatehouse"]`,
		"EXPOSE":      "3000",
		"HEALTHCHECK": `CMD ["/gatehouse", "healthcheck"]`,
	}
	for _, in := range final.Instructions {
		if w, ok := want[in.Cmd]; ok {
			got := in.Args
			if in.Cmd == "HEALTHCHECK" {
				got = healthcheckCommand(got)
			}
			if strings.ReplaceAll(got, " ", "") != strings.ReplaceAll(w, " ", "") {
				t.Errorf("%s = %q, want %q", in.Cmd, got, w)
			}
			delete(want, in.Cmd)
		}
	}
	for k, v := range want {
		t.Errorf("final stage lacks %s %s", k, v)
	}
}

// TestDockerfileRulesCatchMistakes proves every rule can fail.
func TestDockerfileRulesCatchMistakes(t *testing.T) {
	const pin = "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	good := "FROM golang:1.26" + pin + " AS build\n" +
		"RUN CGO_ENABLED=0 go build -tags production,grpcnotrace -trimpath -ldflags \"-s -w\" -o /out/app ./cmd/app\n" +
		"FROM gcr.io/distroless/static-debian12:nonroot" + pin + "\n" +
		"COPY --from=build /out/app /app\n" +
		"USER 65532:65532\n" +
		"HEALTHCHECK --interval=30s CMD [\"/app\", \"healthcheck\"]\n" +
		"ENTRYPOINT [\"/app\"]\n"
	strict := rules{requireHealthcheck: true, requireStaticBuild: true}
	if errs := check(good, strict); len(errs) != 0 {
		t.Fatalf("the good Dockerfile fails: %v", errs)
	}
	for _, tc := range []struct {
		name, from, to, want string
	}{
		{"latest tag", "golang:1.26" + pin, "golang:latest", "latest tag"},
		{"latest tag even when pinned", "golang:1.26" + pin, "golang:latest" + pin, "latest tag"},
		{"unpinned base", "nonroot" + pin, "nonroot", "not pinned"},
		{"unpinned ARG base", "FROM golang:1.26" + pin, "ARG GO=golang:1.26\nFROM ${GO}", "not pinned"},
		{"no USER", "USER 65532:65532\n", "", "no USER"},
		{"root USER", "USER 65532:65532", "USER root", "not a fixed non-root"},
		{"uid 0 USER", "USER 65532:65532", "USER 0:0", "not a fixed non-root"},
		{"shell-form ENTRYPOINT", `ENTRYPOINT ["/app"]`, "ENTRYPOINT /app", "exec (JSON array) form"},
		{"shell-form CMD", `ENTRYPOINT ["/app"]`, `ENTRYPOINT ["/app"]` + "\nCMD /app -v", "exec (JSON array) form"},
		{"shell-form HEALTHCHECK", `CMD ["/app", "healthcheck"]`, "CMD /app healthcheck", "HEALTHCHECK must use CMD"},
		{"no HEALTHCHECK", "HEALTHCHECK --interval=30s CMD [\"/app\", \"healthcheck\"]\n", "", "no HEALTHCHECK"},
		{"HEALTHCHECK NONE", `HEALTHCHECK --interval=30s CMD ["/app", "healthcheck"]`, "HEALTHCHECK NONE", "no HEALTHCHECK"},
		{"cgo build", "CGO_ENABLED=0 ", "", "CGO_ENABLED=0"},
		{"no trimpath", "-trimpath ", "", "-trimpath"},
		{"development build", "-tags production,grpcnotrace ", "", "no development provider"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := strings.Replace(good, tc.from, tc.to, 1)
			if bad == good {
				t.Fatalf("mutation %q did not apply", tc.from)
			}
			errs := check(bad, strict)
			if !strings.Contains(strings.Join(errs, "\n"), tc.want) {
				t.Errorf("want an error containing %q, got %v\n%s", tc.want, errs, bad)
			}
		})
	}
}

func TestParseDockerfileContinuations(t *testing.T) {
	df, err := parseDockerfile("# c\nARG B=x\nFROM --platform=$BUILDPLATFORM ${B} AS one\nRUN a \\\n  # inner comment\n  b \\\n  c\nENTRYPOINT [\"x\"]\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := df.Stages[0]; got.Image != "x" || got.Name != "one" || got.Instructions[0].Args != "a  b  c" || got.Instructions[1].Line != 8 {
		t.Errorf("parsed %+v", got)
	}
}
