package proxy

import (
	"fmt"

	"google.golang.org/grpc/mem"
)

// frame carries one gRPC message as raw wire bytes. It is the only message
// type the raw codec knows: requests and responses are never decoded.
type frame struct {
	data mem.BufferSlice
}

// rawCodec is a gRPC codec that moves bytes without parsing them. Marshal hands
// the frame's buffers to gRPC (which frees them once written); Unmarshal takes
// its own reference to the received buffers, which the owner of the frame must
// free.
type rawCodec struct{}

// codecName is the content-subtype: "proto", because the bytes are protobuf.
const codecName = "proto"

func (rawCodec) Name() string { return codecName }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	f, ok := v.(*frame)
	if !ok {
		return nil, fmt.Errorf("raw codec: cannot marshal %T", v)
	}
	out := f.data
	f.data = nil // ownership moves to gRPC
	return out, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*frame)
	if !ok {
		return fmt.Errorf("raw codec: cannot unmarshal into %T", v)
	}
	data.Ref()
	f.data = data
	return nil
}
