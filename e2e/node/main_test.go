package node

import (
	"io"
	"os"
	"testing"

	"k8s.io/klog/v2"
)

// TestMain keeps client-go's log quiet: a watch that UntilWithSync ends on
// purpose is logged as "Failed to watch ... context canceled".
func TestMain(m *testing.M) {
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
	os.Exit(m.Run())
}
