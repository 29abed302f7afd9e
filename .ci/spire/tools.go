//go:build tools

// Package spiretools pins the SPIRE release whose server and agent binaries
// the MyData tests run against. It is its own module so that the main module
// never depends on SPIRE; build.sh builds the binaries from here.
package spiretools

import (
	_ "github.com/spiffe/spire/cmd/spire-agent"
	_ "github.com/spiffe/spire/cmd/spire-server"
)
