// Package federationtest runs a real federation for tests: it builds mydata-hub and mydata-connector, starts
// them as processes on loopback ports with generated configurations, drives them through their CLIs and
// APIs, and can start a real SPIRE server and agent. Its own tests are the end-to-end tests of the product.
package federationtest
