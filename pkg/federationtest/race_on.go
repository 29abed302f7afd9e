//go:build race

package federationtest

// raceBuild makes the binaries under test carry the race detector when the tests do.
const raceBuild = true
