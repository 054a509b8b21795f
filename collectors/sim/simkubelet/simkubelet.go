// Package simkubelet is a simulated kubelet: it serves the real
// PodResources v1 gRPC API (k8s.io/kubelet/pkg/apis/podresources/v1) on a
// unix socket, answering List with the allocations it was last given. The
// simulator and the tests drive it; collectors/kubelet reads it as it reads
// a node's kubelet.
package simkubelet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"
)

// Alloc is one container's devices of one resource.
type Alloc struct {
	Namespace string
	Pod       string
	Container string
	Resource  string // e.g. nvidia.com/gpu, nvidia.com/mig-1g.10gb
	DeviceIDs []string
}

// Server is a simulated kubelet. Its zero value is not usable: Start one.
type Server struct {
	podresourcesv1.UnimplementedPodResourcesListerServer

	socket string
	lists  atomic.Int64

	mu     sync.Mutex
	allocs []Alloc
	srv    *grpc.Server
	done   chan struct{}
}

// Start serves on socket (its directory is created, mode 0700). Stop it.
func Start(socket string) (*Server, error) {
	s := &Server{socket: socket}
	return s, s.Up()
}

// Socket is the path it serves on.
func (s *Server) Socket() string { return s.socket }

// Lists is how many List calls it has answered.
func (s *Server) Lists() int64 { return s.lists.Load() }

// Set replaces the allocations List answers with.
func (s *Server) Set(allocs []Alloc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.allocs = append([]Alloc(nil), allocs...)
}

// Up serves again after Down (a restarted kubelet: a new socket file).
func (s *Server) Up() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(s.socket), 0o700); err != nil {
		return fmt.Errorf("simulated kubelet: %w", err)
	}
	if err := os.Remove(s.socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("simulated kubelet: %w", err)
	}
	lis, err := net.Listen("unix", s.socket)
	if err != nil {
		return fmt.Errorf("simulated kubelet: %w", err)
	}
	srv := grpc.NewServer()
	podresourcesv1.RegisterPodResourcesListerServer(srv, s)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis) // returns when stopped
	}()
	s.srv, s.done = srv, done
	return nil
}

// Down stops serving and removes the socket, as a kubelet that stops does.
func (s *Server) Down() {
	s.mu.Lock()
	srv, done := s.srv, s.done
	s.srv, s.done = nil, nil
	s.mu.Unlock()
	if srv == nil {
		return
	}
	srv.Stop()
	<-done
	os.Remove(s.socket)
}

// IsUp reports whether it serves.
func (s *Server) IsUp() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv != nil
}

// Stop is Down, for defer.
func (s *Server) Stop() { s.Down() }

// List answers with the allocations, one PodResources per pod (in the
// order first given), its containers in order.
func (s *Server) List(context.Context, *podresourcesv1.ListPodResourcesRequest) (*podresourcesv1.ListPodResourcesResponse, error) {
	s.lists.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &podresourcesv1.ListPodResourcesResponse{}
	pods := map[[2]string]*podresourcesv1.PodResources{}
	for _, a := range s.allocs {
		k := [2]string{a.Namespace, a.Pod}
		p := pods[k]
		if p == nil {
			p = &podresourcesv1.PodResources{Namespace: a.Namespace, Name: a.Pod}
			pods[k] = p
			resp.PodResources = append(resp.PodResources, p)
		}
		var c *podresourcesv1.ContainerResources
		for _, have := range p.Containers {
			if have.Name == a.Container {
				c = have
			}
		}
		if c == nil {
			c = &podresourcesv1.ContainerResources{Name: a.Container}
			p.Containers = append(p.Containers, c)
		}
		c.Devices = append(c.Devices, &podresourcesv1.ContainerDevices{
			ResourceName: a.Resource, DeviceIds: append([]string(nil), a.DeviceIDs...)})
	}
	return resp, nil
}
