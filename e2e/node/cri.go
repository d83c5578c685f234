package node

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

var metav1GetOptions = metav1.GetOptions{}

func criClient(socket string) (cri.RuntimeServiceClient, *grpc.ClientConn, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, err
	}
	return cri.NewRuntimeServiceClient(conn), conn, nil
}

// criSandboxes lists the IDs of every pod sandbox of the runtime.
func criSandboxes(ctx context.Context, socket string) ([]string, error) {
	rs, conn, err := criClient(socket)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	resp, err := rs.ListPodSandbox(ctx, &cri.ListPodSandboxRequest{})
	if err != nil {
		return nil, fmt.Errorf("CRI ListPodSandbox: %w", err)
	}
	var ids []string
	for _, s := range resp.Items {
		ids = append(ids, s.Id)
	}
	return ids, nil
}

// criRemoveSandbox stops a sandbox (its containers, then CNI DEL) and
// removes it.
func criRemoveSandbox(ctx context.Context, socket, id string) error {
	rs, conn, err := criClient(socket)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := rs.StopPodSandbox(ctx, &cri.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		return fmt.Errorf("CRI StopPodSandbox %s: %w", id, err)
	}
	if _, err := rs.RemovePodSandbox(ctx, &cri.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		return fmt.Errorf("CRI RemovePodSandbox %s: %w", id, err)
	}
	return nil
}
