package main

import (
	"archive/tar"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image config mirrors the Dockerfile's final stage (USER, EXPOSE,
// ENTRYPOINT, HEALTHCHECK); internal/deploycheck checks both agree.
var (
	entrypoint  = []string{"/gatehouse"}
	user        = "65532:65532"
	exposedPort = "3000/tcp"
	healthcheck = &v1.HealthConfig{Test: []string{"CMD", "/gatehouse", "healthcheck"},
		Interval: 30 * time.Second, Timeout: 3 * time.Second, StartPeriod: 10 * time.Second, Retries: 3}
)

func remoteOptions(insecure bool) ([]name.Option, []remote.Option) {
	var nopts []name.Option
	if insecure {
		nopts = append(nopts, name.Insecure)
	}
	return nopts, []remote.Option{remote.WithAuthFromKeychain(authn.DefaultKeychain)}
}

// loadBase reads the base index from a registry (REF, pinned by digest) or
// from an OCI layout (oci:DIR).
func loadBase(ref string, insecure bool) (v1.ImageIndex, error) {
	if dir, ok := strings.CutPrefix(ref, "oci:"); ok {
		return layout.ImageIndexFromPath(dir)
	}
	nopts, ropts := remoteOptions(insecure)
	r, err := name.ParseReference(ref, nopts...)
	if err != nil {
		return nil, err
	}
	if _, ok := r.(name.Digest); !ok {
		return nil, fmt.Errorf("base %q is not pinned by digest (REPO@sha256:...)", ref)
	}
	return remote.Index(r, ropts...)
}

// platformImage picks idx's image for platform p.
func platformImage(idx v1.ImageIndex, p *v1.Platform) (v1.Image, v1.Hash, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, v1.Hash{}, err
	}
	for _, d := range m.Manifests {
		if d.Platform != nil && d.Platform.OS == p.OS && d.Platform.Architecture == p.Architecture && d.Platform.Variant == p.Variant {
			img, err := idx.Image(d.Digest)
			return img, d.Digest, err
		}
	}
	return nil, v1.Hash{}, fmt.Errorf("base has no %s image", p)
}

func cmdImage(args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	base := fs.String("base", "", "base image index: REPO@sha256:... or oci:DIR")
	out := fs.String("out", "", "OCI layout directory to write")
	epoch := fs.Int64("epoch", 0, "timestamp of the app layer and the config (SOURCE_DATE_EPOCH)")
	insecure := fs.Bool("insecure", false, "allow a plain-http registry for -base")
	var binaries, annotations multiFlag
	fs.Var(&binaries, "binary", "os/arch=PATH of the gatehouse binary (repeat per platform)")
	fs.Var(&annotations, "annotation", "key=value OCI annotation for the index, each manifest and the config labels (repeat)")
	if err := parse(fs, args, "base", "out", "epoch"); err != nil {
		return err
	}
	if len(binaries) == 0 {
		return fmt.Errorf("-binary is required")
	}
	ann, err := keyValues(annotations)
	if err != nil {
		return err
	}
	t := time.Unix(*epoch, 0).UTC()
	ann["org.opencontainers.image.created"] = t.Format(time.RFC3339)
	baseIdx, err := loadBase(*base, *insecure)
	if err != nil {
		return fmt.Errorf("base: %w", err)
	}
	baseName := strings.SplitN(*base, "@", 2)[0]

	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, b := range binaries {
		p, path, ok := strings.Cut(b, "=")
		if !ok {
			return fmt.Errorf("-binary %q: want os/arch=PATH", b)
		}
		plat, err := v1.ParsePlatform(p)
		if err != nil {
			return err
		}
		img, err := appImage(baseIdx, plat, path, t, ann, baseName)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: plat}})
	}
	idx = mutate.Annotations(idx, ann).(v1.ImageIndex)
	return writeLayout(*out, idx)
}

// appImage is the base's plat image plus one layer holding /gatehouse.
func appImage(baseIdx v1.ImageIndex, plat *v1.Platform, binary string, t time.Time, ann map[string]string, baseName string) (v1.Image, error) {
	baseImg, baseDigest, err := platformImage(baseIdx, plat)
	if err != nil {
		return nil, err
	}
	bin, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	l, err := layer([]entry{{path: "/gatehouse", mode: 0o555, kind: tar.TypeReg, data: bin}}, t)
	if err != nil {
		return nil, err
	}
	mt, err := baseImg.MediaType()
	if err != nil {
		return nil, err
	}
	lmt := types.OCILayer
	if mt == types.DockerManifestSchema2 {
		lmt = types.DockerLayer // one family of media types per manifest
	}
	img, err := mutate.Append(baseImg, mutate.Addendum{Layer: l, MediaType: lmt,
		History: v1.History{Created: v1.Time{Time: t}, CreatedBy: "COPY gatehouse /gatehouse (scripts/release.sh)"}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: t}
	cf.Config.User = user
	cf.Config.Entrypoint = entrypoint
	cf.Config.Cmd = nil
	cf.Config.WorkingDir = "/"
	cf.Config.ExposedPorts = map[string]struct{}{exposedPort: {}}
	cf.Config.Healthcheck = healthcheck
	if cf.Config.Labels == nil {
		cf.Config.Labels = map[string]string{}
	}
	for k, v := range ann {
		cf.Config.Labels[k] = v
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, err
	}
	// The OCI base-image annotations record exactly which base this was built on.
	manifestAnn := map[string]string{"org.opencontainers.image.base.name": baseName,
		"org.opencontainers.image.base.digest": baseDigest.String()}
	for k, v := range ann {
		manifestAnn[k] = v
	}
	return mutate.Annotations(img, manifestAnn).(v1.Image), nil
}
