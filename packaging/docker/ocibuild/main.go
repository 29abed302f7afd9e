// Command ocibuild assembles the mydata-hub and mydata-connector container images without a Docker engine
// or a base image download: a distroless-like root made of the component's binary, the shared libraries it
// loads (found by reading its ELF headers, so glibc comes from the build machine), the CA certificates,
// /etc/passwd and /etc/group with the non-root user the image runs as, the health probe and the
// configuration. It writes an OCI image layout as a tar archive (oci-archive), which `docker load`,
// `podman load` and `skopeo copy oci-archive:…` read.
//
// It is its own module, like .ci/spire, so that the product's go.mod does not carry go-containerregistry.
//
//	go run . -component connector -binary ../../../bin/mydata-connector -probe ../../../bin/mydata-probe \
//	    -config ../connector.yaml -version v1.2.3 -out ../../../bin/mydata-connector-image.tar
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

func main() {
	var o options
	flag.StringVar(&o.component, "component", "", "hub or connector")
	flag.StringVar(&o.binary, "binary", "", "the mydata-hub or mydata-connector binary to put in /usr/bin")
	flag.StringVar(&o.probe, "probe", "", "the static mydata-probe binary (the HEALTHCHECK)")
	flag.StringVar(&o.config, "config", "", "the configuration to put in /etc/mydata/<component>.yaml")
	flag.StringVar(&o.version, "version", "dev", "version for the image's labels and tag")
	flag.StringVar(&o.revision, "revision", "", "source revision (git commit) for the image's labels")
	flag.StringVar(&o.out, "out", "", "where to write the OCI archive (.tar)")
	flag.StringVar(&o.certs, "ca-certificates", "/etc/ssl/certs/ca-certificates.crt", "the CA certificate bundle to install")
	epoch := flag.Int64("source-date-epoch", envEpoch(), "timestamp of every file and of the image (default $SOURCE_DATE_EPOCH, else 0)")
	flag.Parse()
	o.created = time.Unix(*epoch, 0).UTC()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "ocibuild:", err)
		os.Exit(1)
	}
}

func envEpoch() int64 {
	var n int64
	if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
		fmt.Sscan(v, &n)
	}
	return n
}
