package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/podstamp/podstamp/e2e/cluster"
)

// standInKubelet answers GET /<node>/pods over HTTPS as the kubelet of each
// simulated node answers GET /pods: every pod bound to that node. It is the
// pod source of the `podstamp --pod-source kubelet` fleet, since the
// simulated nodes have no kubelets. Its pods come from one watch of all
// pods (a client-go informer) that runs through every fleet's windows,
// the baseline's included, so what it asks of the API server cancels out,
// as a real kubelet's own watch of its pods is there whatever runs on the
// node. It counts the bytes it writes, so that what the fleet read from
// it is not taken for what it read from the API server.
type standInKubelet struct {
	url     string // https://127.0.0.1:<port>; a node's kubelet is url + "/" + node
	caFile  string // PEM of the CA that signed its certificate
	written atomic.Int64
	srv     *http.Server
	stop    context.CancelFunc
}

func startStandInKubelet(ctx context.Context, client kubernetes.Interface, dir string) (*standInKubelet, error) {
	pkiDir := filepath.Join(dir, "standin-kubelet")
	if err := os.MkdirAll(pkiDir, 0o700); err != nil {
		return nil, err
	}
	pki, err := cluster.WritePKI(pkiDir, "stand-in kubelet CA", net.IPv4(127, 0, 0, 1))
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(pki.CertFile, pki.KeyFile)
	if err != nil {
		return nil, err
	}
	k := &standInKubelet{caFile: pki.CAFile}
	ictx, cancel := context.WithCancel(ctx)
	k.stop = cancel
	f := informers.NewSharedInformerFactory(client, 0)
	inf := f.Core().V1().Pods().Informer()
	if err := inf.AddIndexers(cache.Indexers{"node": func(obj any) ([]string, error) {
		return []string{obj.(*corev1.Pod).Spec.NodeName}, nil
	}}); err != nil {
		cancel()
		return nil, err
	}
	f.Start(ictx.Done())
	if !cache.WaitForCacheSync(ictx.Done(), inf.HasSynced) {
		cancel()
		return nil, errors.New("stand-in kubelet: the pod informer did not sync")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		return nil, err
	}
	k.url = "https://" + ln.Addr().String()
	k.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		node, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		if rest != "pods" || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		objs, err := inf.GetIndexer().ByIndex("node", node)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		list := corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}}
		for _, o := range objs {
			list.Items = append(list.Items, *o.(*corev1.Pod))
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&list)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		_ = k.srv.Serve(tls.NewListener(&countingListener{Listener: ln, n: &k.written}, &tls.Config{Certificates: []tls.Certificate{cert}}))
	}()
	return k, nil
}

func (k *standInKubelet) close() {
	k.stop()
	_ = k.srv.Close()
}

// countingListener counts the bytes written to the connections it accepts.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, n: l.n}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	k, err := c.Conn.Write(p)
	c.n.Add(int64(k))
	return k, err
}
