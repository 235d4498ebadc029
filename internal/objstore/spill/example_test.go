package spill_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/objstore/spill"
)

func Example() {
	tmp, err := os.MkdirTemp("", "spill-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)

	s, err := spill.Open(spill.Config{Dir: filepath.Join(tmp, "spill")})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	id := ids.ForPut()
	if err := s.Spill(context.Background(), []spill.Object{{ID: id, Data: []byte("hello, disk")}}); err != nil {
		log.Fatal(err) // errors.Is(err, spill.ErrDiskFull) when the disk is too full
	}
	size, _ := s.Has(id)
	buf := make([]byte, size)
	if _, err := s.ReadAt(id, buf, 0); err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(buf))
	if err := s.Delete(id); err != nil {
		log.Fatal(err)
	}
	fmt.Println(s.Stats().Files, "files left")
	// Output:
	// hello, disk
	// 0 files left
}
