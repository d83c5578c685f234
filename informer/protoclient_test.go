package informer

import (
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/podstamp/podstamp/informer/kubetypes"
)

// protoServer answers pods from the files of kubetypes/testdata (written by
// the Kubernetes serializers), as protobuf (.pb) or JSON (.json) after the
// request's Accept, as the API server does.
type protoServer struct {
	t    *testing.T
	list string // testdata base name of the list answer
	gone bool   // answer lists 410 (status-gone)
}

func (s *protoServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	proto := strings.HasPrefix(r.Header.Get("Accept"), kubetypes.ContentTypeProtobuf)
	ext, ct := ".json", "application/json"
	if proto {
		ext, ct = ".pb", kubetypes.ContentTypeProtobuf
	}
	name, code := s.list, http.StatusOK
	switch {
	case r.URL.Query().Get("watch") == "true":
		name = "watch-stream"
		if proto {
			ct += ";stream=watch"
		}
	case s.gone:
		name, code = "status-gone", http.StatusGone
	}
	body, err := os.ReadFile("kubetypes/testdata/" + name + ext)
	if err != nil {
		s.t.Error(err)
		return
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// protoAPI is NewAPI on a protoServer; json makes it ask for JSON only.
func protoAPI(t *testing.T, srv *protoServer, json bool) API {
	t.Helper()
	var h http.Handler = srv
	if json {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Header.Set("Accept", mediaJSON)
			srv.ServeHTTP(w, r)
		})
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	api, err := NewAPI(&RESTConfig{Host: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	return api
}

func watchAll(t *testing.T, api API) []Event {
	t.Helper()
	w, err := api.WatchPods(t.Context(), ListOptions{AllowWatchBookmarks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var evs []Event
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return evs
			}
			evs = append(evs, ev)
		case <-timeout:
			t.Fatalf("watch did not end; events so far %+v", evs)
		}
	}
}

// TestNewAPIProtobuf: pods listed and watched as Kubernetes protobuf (the
// API server's own encoding of the testdata) come out as they do from the
// same objects in JSON; a refusal in protobuf is read as the Status it is;
// a watch event over the cap is refused without being read.
func TestNewAPIProtobuf(t *testing.T) {
	t.Parallel()
	srv := &protoServer{t: t, list: "podlist3"}
	pb, js := protoAPI(t, srv, false), protoAPI(t, srv, true)

	lp, err := pb.ListPods(t.Context(), ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lj, err := js.ListPods(t.Context(), ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(lp.Items) != 3 || lp.ResourceVersion == "" || !reflect.DeepEqual(lp, lj) {
		t.Errorf("list as protobuf\n%+v\nas JSON\n%+v", lp, lj)
	}

	// The stream: ADDED, MODIFIED, BOOKMARK, DELETED and an ERROR of 410.
	ep, ej := watchAll(t, pb), watchAll(t, js)
	if len(ep) < 5 || !reflect.DeepEqual(ep, ej) {
		t.Errorf("watch as protobuf\n%+v\nas JSON\n%+v", ep, ej)
	}
	if last := ep[len(ep)-1]; last.Type != kubetypes.Error || last.Status == nil || last.Status.Code != http.StatusGone {
		t.Errorf("last event %+v, want the stream's ERROR of 410", last)
	}

	srv.gone = true
	_, err = pb.ListPods(t.Context(), ListOptions{})
	if !IsGone(err) || !strings.Contains(err.Error(), "too old") {
		t.Errorf("410 in protobuf: %v", err)
	}

	pb.(*restAPI).maxObject = 1024
	ev := watchAll(t, pb)
	if len(ev) == 0 || ev[len(ev)-1].Status == nil || ev[len(ev)-1].Status.Reason != reasonEventTooLarge {
		t.Errorf("events with a cap of 1 KiB: %+v", ev)
	}
}
