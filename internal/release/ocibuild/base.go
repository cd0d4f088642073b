package main

import (
	"archive/tar"
	"flag"
	"fmt"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The stand-in reproduces what Gatehouse relies on in
// gcr.io/distroless/static-debian12:nonroot: the users and groups (nonroot is
// 65532), its home, a world-writable /tmp, Debian's CA bundle and time zone
// database, and the image config (user 65532, SSL_CERT_FILE). It exists for
// machines that cannot pull the real base (CI here); releases use the real one,
// pinned by digest in the Dockerfile.
const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	group = "root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n"
	// Go's resolver reads it: files before DNS, as glibc does by default.
	nsswitch = "hosts: files dns\n"
)

func cmdBase(args []string) error {
	fs := flag.NewFlagSet("base", flag.ContinueOnError)
	out := fs.String("out", "", "OCI layout directory to write")
	epoch := fs.Int64("epoch", 0, "timestamp of every file and of the config (SOURCE_DATE_EPOCH)")
	caCerts := fs.String("ca-certs", "/etc/ssl/certs/ca-certificates.crt", "CA bundle (Debian's ca-certificates package)")
	zoneinfo := fs.String("zoneinfo", "/usr/share/zoneinfo", "time zone database (Debian's tzdata package)")
	osRelease := fs.String("os-release", "/etc/os-release", "os-release file")
	var platforms multiFlag
	fs.Var(&platforms, "platform", "os/arch (repeat; default linux/amd64 and linux/arm64)")
	if err := parse(fs, args, "out", "epoch"); err != nil {
		return err
	}
	if len(platforms) == 0 {
		platforms = multiFlag{"linux/amd64", "linux/arm64"}
	}
	t := time.Unix(*epoch, 0).UTC()

	entries := []entry{
		{path: "/etc/passwd", mode: 0o644, kind: tar.TypeReg, data: []byte(passwd)},
		{path: "/etc/group", mode: 0o644, kind: tar.TypeReg, data: []byte(group)},
		{path: "/etc/nsswitch.conf", mode: 0o644, kind: tar.TypeReg, data: []byte(nsswitch)},
		{path: "/home/nonroot", mode: 0o700, uid: 65532, gid: 65532, kind: tar.TypeDir},
		{path: "/root", mode: 0o700, kind: tar.TypeDir},
		{path: "/tmp", mode: 0o1777, kind: tar.TypeDir},
	}
	for _, f := range []struct{ src, dest string }{{*caCerts, "/etc/ssl/certs/ca-certificates.crt"}, {*osRelease, "/etc/os-release"}} {
		b, err := os.ReadFile(f.src)
		if err != nil {
			return fmt.Errorf("base: %w", err)
		}
		entries = append(entries, entry{path: f.dest, mode: 0o644, kind: tar.TypeReg, data: b})
	}
	tz, err := treeEntries(*zoneinfo, "/usr/share/zoneinfo")
	if err != nil {
		return fmt.Errorf("base: zoneinfo: %w", err)
	}
	l, err := layer(withParents(append(entries, tz...)), t)
	if err != nil {
		return err
	}

	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range platforms {
		plat, err := v1.ParsePlatform(p)
		if err != nil {
			return err
		}
		img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
		img, err = mutate.Append(img, mutate.Addendum{Layer: l, MediaType: types.OCILayer,
			History: v1.History{Created: v1.Time{Time: t}, CreatedBy: "ocibuild base: distroless static-debian12:nonroot stand-in"}})
		if err != nil {
			return err
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return err
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture, cf.Variant = plat.OS, plat.Architecture, plat.Variant
		cf.Created = v1.Time{Time: t}
		cf.Config.User = "65532"
		cf.Config.WorkingDir = "/home/nonroot"
		cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			return err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: plat}})
	}
	return writeLayout(*out, idx)
}

// writeLayout writes idx as the layout's index.json (so that `crane push
// --index DIR REF` pushes exactly idx) and prints idx's digest.
func writeLayout(dir string, idx v1.ImageIndex) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if _, err := layout.Write(dir, idx); err != nil {
		return fmt.Errorf("write %s: %w", dir, err)
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Println(d.String())
	return nil
}
