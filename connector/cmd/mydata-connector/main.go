// Command mydata-connector is the MyData Federation connector that runs at every data provider and service
// provider.
package main

import (
	"fmt"
	"os"
	_ "time/tzdata" // counter.time_zone works on hosts without a zone database
)

const usage = `mydata-connector: the MyData Federation connector

Usage:
  mydata-connector enroll --config FILE --token T [--hub URL] [--hub-ca FINGERPRINT]
                                       get this connector's SVID with a single-use join token
  mydata-connector serve  --config FILE
                                       run the connector
  mydata-connector status --config FILE [--peer [ORG/]NAME]
                                       print identity, hub reachability and directory age; ping a peer
  mydata-connector audit verify|export --config FILE [--since T] [--out F]
                                       check the audit log's hash chain, or export it as JSON lines
  mydata-connector verify [--config FILE | --bundle PEM --trust-domain TD] PACKAGE.zip
                                       check a citizen's download package offline (digests, signatures)
  mydata-connector counter passwd NAME
                                       read a password from standard input and print a counter.staff_file line
  mydata-connector version
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "enroll":
		err = enroll(os.Args[2:], os.Stdout)
	case "serve":
		err = serve(os.Args[2:])
	case "status":
		err = status(os.Args[2:], os.Stdout)
	case "audit":
		err = auditCmd(os.Args[2:], os.Stdout)
	case "verify":
		err = verifyCmd(os.Args[2:], os.Stdout)
	case "counter":
		err = counterCmd(os.Args[2:], os.Stdin, os.Stdout, os.Stderr)
	case "version":
		err = version(os.Stdout)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "mydata-connector: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mydata-connector:", err)
		os.Exit(1)
	}
}
