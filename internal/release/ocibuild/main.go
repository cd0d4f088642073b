// Command ocibuild assembles Gatehouse's multi-arch release image without a
// container engine, byte for byte the same from the same inputs, and attaches
// artifacts (the SBOM) to it as OCI 1.1 referrers. scripts/release.sh drives
// it; scripts/deploy-check.sh proves its output.
//
//	ocibuild base   -out DIR -epoch N                  a distroless-static:nonroot stand-in
//	ocibuild image  -base REF|oci:DIR -out DIR -epoch N -binary linux/amd64=PATH ... [-annotation k=v ...]
//	ocibuild attach -subject REPO@DIGEST -file F -artifact-type T -epoch N
//	ocibuild referrers -artifact-type T REPO@DIGEST
//
// Reproducible by construction: every timestamp is -epoch (SOURCE_DATE_EPOCH),
// tar entries are sorted with fixed owners and modes, gzip carries no name or
// time, and JSON is written by one encoder. The image's digest depends only on
// the base's digest, the binaries and the flags.
//
// Registries: credentials from the Docker config (as crane and cosign read
// them); -insecure allows plain http (a local registry).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "base":
		err = cmdBase(os.Args[2:])
	case "image":
		err = cmdImage(os.Args[2:])
	case "attach":
		err = cmdAttach(os.Args[2:])
	case "referrers":
		err = cmdReferrers(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ocibuild:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: ocibuild base|image|attach|referrers [flags] (see the package comment)")
	os.Exit(2)
}

// multiFlag collects repeated -flag values.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// keyValues parses k=v flag values.
func keyValues(kvs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q: want key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}

func parse(fs *flag.FlagSet, args []string, required ...string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, name := range required {
		if f := fs.Lookup(name); f == nil || f.Value.String() == "" || f.Value.String() == "0" {
			return errors.New("-" + name + " is required")
		}
	}
	return nil
}
