package main

import (
	"github.com/podstamp/podstamp/e2e/cluster"
	"github.com/podstamp/podstamp/e2e/cmd/buildcmd"
)

func main() { buildcmd.One("etcd", cluster.Etcd) }
