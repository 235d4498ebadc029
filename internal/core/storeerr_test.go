package core

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/rayo-dev/rayo/internal/objstore"
)

// Every way a store can lack room for an object matches ErrStoreFull and
// keeps the store's words (the object's size and the store's capacity).
func TestStoreErrorsMatchErrStoreFull(t *testing.T) {
	for _, cause := range []error{objstore.ErrFull, objstore.ErrTooLarge} {
		err := wrapStoreErr(fmt.Errorf("raylet: pull x: %w: x needs 20 bytes, capacity is 16", cause))
		if !errors.Is(err, ErrStoreFull) {
			t.Errorf("%v: got %v, want ErrStoreFull", cause, err)
		}
		if !strings.HasSuffix(err.Error(), "x needs 20 bytes, capacity is 16") {
			t.Errorf("%v: message %q lost the store's words", cause, err)
		}
	}
	other := errors.New("connection refused")
	if err := wrapStoreErr(other); err != other {
		t.Errorf("other errors pass through: got %v", err)
	}
	if err := wrapStoreErr(nil); err != nil {
		t.Errorf("nil: got %v", err)
	}
}
