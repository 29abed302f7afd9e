package main

import (
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// Where the dynamic loader of a Debian amd64 system looks, in its order.
var libDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}

// library is a shared object to copy: read from src (symlinks resolved), written at dst, the path the
// binary or the loader asks for.
type library struct{ src, dst string }

// sharedLibraries returns the ELF interpreter and every shared library the binaries need, transitively.
// A static binary needs none.
func sharedLibraries(bins []string) ([]library, error) {
	found := map[string]library{}
	var visit func(path string) error
	visit = func(path string) error {
		f, err := elf.Open(path)
		if err != nil {
			return fmt.Errorf("read ELF %s: %w", path, err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type != elf.PT_INTERP {
				continue
			}
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return err
			}
			interp := string(b[:len(b)-1]) // NUL-terminated
			if _, ok := found[interp]; !ok {
				src, err := filepath.EvalSymlinks(interp)
				if err != nil {
					return fmt.Errorf("%s: interpreter %s: %w", path, interp, err)
				}
				found[interp] = library{src: src, dst: interp}
			}
		}
		needed, err := f.ImportedLibraries()
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		for _, name := range needed {
			lib, err := locate(name)
			if err != nil {
				return fmt.Errorf("%s needs %s: %w", path, name, err)
			}
			if _, ok := found[lib.dst]; ok {
				continue
			}
			found[lib.dst] = lib
			if err := visit(lib.src); err != nil {
				return err
			}
		}
		return nil
	}
	for _, b := range bins {
		if err := visit(b); err != nil {
			return nil, err
		}
	}
	libs := make([]library, 0, len(found))
	for _, l := range found {
		libs = append(libs, l)
	}
	sort.Slice(libs, func(i, j int) bool { return libs[i].dst < libs[j].dst })
	return libs, nil
}

func locate(name string) (library, error) {
	for _, d := range libDirs {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			src, err := filepath.EvalSymlinks(p)
			if err != nil {
				return library{}, err
			}
			// Debian's /lib is /usr/lib (merged /usr); install under the canonical /usr path's twin, /lib/…,
			// which is where the loader's default search path starts.
			return library{src: src, dst: filepath.Join("/lib/x86_64-linux-gnu", name)}, nil
		}
	}
	return library{}, fmt.Errorf("not found in %v", libDirs)
}
