// Command nfpm builds rafter's .deb and .rpm with the nfpm library. It is
// the part of nfpm's own command that `make package` needs, with only the
// deb and rpm packagers linked in: nfpm's full command pulls in every
// packager and a terminal UI, which made a cold build take minutes.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers "deb"
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers "rpm"
)

func main() {
	config := flag.String("config", "nfpm.yaml", "nfpm configuration")
	packager := flag.String("packager", "", "deb or rpm")
	target := flag.String("target", ".", "directory to write the package into")
	flag.Parse()
	path, err := build(*config, *packager, *target)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nfpm:", err)
		os.Exit(1)
	}
	fmt.Println("created package:", path)
}

func build(configPath, packager, targetDir string) (string, error) {
	cfg, err := nfpm.ParseFile(configPath)
	if err != nil {
		return "", err
	}
	info, err := cfg.Get(packager)
	if err != nil {
		return "", err
	}
	info = nfpm.WithDefaults(info)
	pkg, err := nfpm.Get(packager)
	if err != nil {
		return "", err
	}
	target := filepath.Join(targetDir, pkg.ConventionalFileName(info))
	f, err := os.Create(target)
	if err != nil {
		return "", err
	}
	info.Target = target
	if err := pkg.Package(info, f); err != nil {
		f.Close()
		os.Remove(target)
		return "", err
	}
	return target, f.Close()
}
