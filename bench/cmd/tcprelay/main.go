package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("tcprelay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:4317", "listen address")
	upstream := fs.String("upstream", "127.0.0.1:14317", "upstream host:port")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	r, err := start(*listen, *upstream, log)
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	log.Info("tcprelay listening", "addr", r.lis.Addr().String(), "upstream", *upstream)
	<-ctx.Done()
	r.stop()
	return 0
}

type relay struct {
	lis      net.Listener
	upstream string
	log      *slog.Logger
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
}

func start(listen, upstream string, log *slog.Logger) (*relay, error) {
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	r := &relay{lis: lis, upstream: upstream, log: log, conns: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

func (r *relay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.lis.Accept()
		if err != nil {
			return
		}
		r.wg.Add(1)
		go r.serve(c.(*net.TCPConn))
	}
}

func (r *relay) track(c net.Conn, on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if on {
		r.conns[c] = struct{}{}
	} else {
		delete(r.conns, c)
	}
}

func (r *relay) serve(down *net.TCPConn) {
	defer r.wg.Done()
	r.track(down, true)
	defer r.track(down, false)
	defer down.Close()
	c, err := net.DialTimeout("tcp", r.upstream, 5*time.Second)
	if err != nil {
		r.log.Warn("dial upstream", "err", err)
		return
	}
	up := c.(*net.TCPConn)
	r.track(up, true)
	defer r.track(up, false)
	defer up.Close()
	var both sync.WaitGroup
	both.Add(2)
	pipe := func(dst, src *net.TCPConn) {
		defer both.Done()
		// *net.TCPConn.ReadFrom splices from a TCP source on Linux.
		if _, err := io.Copy(dst, src); err != nil {
			// A failed direction ends the other too.
			dst.Close()
			src.Close()
			return
		}
		_ = dst.CloseWrite()
	}
	go pipe(up, down)
	go pipe(down, up)
	both.Wait()
}

// stop closes the listener and every open connection and waits for them.
func (r *relay) stop() {
	_ = r.lis.Close()
	r.mu.Lock()
	for c := range r.conns {
		_ = c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}
