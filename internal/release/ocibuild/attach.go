package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// emptyConfig is the OCI 1.1 empty descriptor's content: artifacts carry
// their type in artifactType, not in a config blob.
var emptyConfig = []byte("{}")

// rawManifest satisfies remote.Taggable with bytes we wrote ourselves.
type rawManifest []byte

func (r rawManifest) RawManifest() ([]byte, error) { return r, nil }

// cmdAttach pushes file as an OCI 1.1 artifact whose subject is -subject:
// registries with the referrers API index it; for the others ggcr maintains
// the referrers tag (sha256-<digest>) as the OCI distribution spec describes.
func cmdAttach(args []string) error {
	fs := flag.NewFlagSet("attach", flag.ContinueOnError)
	subject := fs.String("subject", "", "REPO@sha256:... the artifact refers to")
	file := fs.String("file", "", "the artifact's content")
	artifactType := fs.String("artifact-type", "", "e.g. application/vnd.cyclonedx+json")
	epoch := fs.Int64("epoch", 0, "org.opencontainers.image.created of the artifact (SOURCE_DATE_EPOCH)")
	insecure := fs.Bool("insecure", false, "allow a plain-http registry")
	if err := parse(fs, args, "subject", "file", "artifact-type", "epoch"); err != nil {
		return err
	}
	nopts, ropts := remoteOptions(*insecure)
	subj, err := name.NewDigest(*subject, nopts...)
	if err != nil {
		return fmt.Errorf("-subject: %w", err)
	}
	subjDesc, err := remote.Head(subj, ropts...)
	if err != nil {
		return fmt.Errorf("subject %s: %w", subj, err)
	}
	data, err := os.ReadFile(*file)
	if err != nil {
		return err
	}
	repo := subj.Context()
	for _, blob := range []struct {
		b  []byte
		mt types.MediaType
	}{{emptyConfig, "application/vnd.oci.empty.v1+json"}, {data, types.MediaType(*artifactType)}} {
		if err := remote.WriteLayer(repo, static.NewLayer(blob.b, blob.mt), ropts...); err != nil {
			return fmt.Errorf("upload blob: %w", err)
		}
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  *artifactType,
		Config: v1.Descriptor{MediaType: "application/vnd.oci.empty.v1+json", Size: int64(len(emptyConfig)),
			Digest: digestOf(emptyConfig), Data: emptyConfig},
		Layers: []v1.Descriptor{{MediaType: types.MediaType(*artifactType), Size: int64(len(data)), Digest: digestOf(data),
			Annotations: map[string]string{"org.opencontainers.image.title": filepath.Base(*file)}}},
		Subject:     &v1.Descriptor{MediaType: subjDesc.MediaType, Size: subjDesc.Size, Digest: subjDesc.Digest},
		Annotations: map[string]string{"org.opencontainers.image.created": time.Unix(*epoch, 0).UTC().Format(time.RFC3339)},
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return err
	}
	raw := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	d := digestOf(raw)
	if err := remote.Put(repo.Digest(d.String()), rawManifest(raw), ropts...); err != nil {
		return fmt.Errorf("push artifact manifest: %w", err)
	}
	fmt.Println(d.String())
	return nil
}

func digestOf(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// cmdReferrers lists the artifacts referring to a digest: "DIGEST ARTIFACT-TYPE" per line.
func cmdReferrers(args []string) error {
	fs := flag.NewFlagSet("referrers", flag.ContinueOnError)
	artifactType := fs.String("artifact-type", "", "only this artifact type")
	insecure := fs.Bool("insecure", false, "allow a plain-http registry")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("referrers: want one REPO@sha256:... argument")
	}
	nopts, ropts := remoteOptions(*insecure)
	d, err := name.NewDigest(fs.Arg(0), nopts...)
	if err != nil {
		return err
	}
	if *artifactType != "" {
		ropts = append(ropts, remote.WithFilter("artifactType", *artifactType))
	}
	idx, err := remote.Referrers(d, ropts...)
	if err != nil {
		return err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	for _, r := range m.Manifests {
		if *artifactType == "" || r.ArtifactType == *artifactType {
			fmt.Println(r.Digest.String(), r.ArtifactType)
		}
	}
	return nil
}
