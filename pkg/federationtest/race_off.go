//go:build !race

package federationtest

const raceBuild = false
