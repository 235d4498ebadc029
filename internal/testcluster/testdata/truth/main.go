// Command truth is the driver of the tests of truthful actor and job
// state. Modes:
//
//	actors TAG        makes a plain actor, a named one (TAG-named) and a
//	                  detached named one (TAG-keeper), calls each once,
//	                  prints ready=1 and exits through Shutdown
//	hang TAG          the same, then waits to be killed
//	pinned NODE TAG   makes a named actor (TAG-pinned) on node NODE that
//	                  may not restart, prints ready=1 and waits
//	keep NODE TAG     makes a named actor (TAG-named) and a detached named
//	                  one (TAG-keeper) on node NODE, calls each once,
//	                  prints ready=1 and waits
//	call NAME         finds the actor NAME, calls it and prints where it runs
//
// It prints key=value lines, as the multi-node driver does.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/rayo-dev/rayo"
)

// Box is an actor that says where it runs.
type Box struct{}

// Where is the node and pid of the actor's process.
func (Box) Where() string { return fmt.Sprintf("%s/%d", rayo.NodeID(), os.Getpid()) }

var (
	newBox = rayo.Actor0(func() Box { return Box{} })
	where  = rayo.Method0(newBox, Box.Where)
)

func main() {
	if err := rayo.Init(); err != nil {
		fmt.Println("init_err=" + err.Error())
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := run(ctx, os.Args[1], os.Args[2:]); err != nil {
		fmt.Println("err=" + err.Error())
		_ = rayo.Shutdown()
		os.Exit(1)
	}
	_ = rayo.Shutdown()
}

func run(ctx context.Context, mode string, args []string) error {
	var boxes []rayo.Actor[Box]
	switch mode {
	case "actors", "hang":
		tag := args[0]
		boxes = append(boxes, newBox.Remote(),
			newBox.Options(rayo.Name(tag+"-named")).Remote(),
			newBox.Options(rayo.Name(tag+"-keeper"), rayo.Detached()).Remote())
	case "pinned":
		boxes = append(boxes, newBox.Options(rayo.Name(args[1]+"-pinned"), rayo.NodeAffinity(args[0], false)).Remote())
	case "keep":
		node, tag := args[0], args[1]
		boxes = append(boxes, newBox.Options(rayo.Name(tag+"-named"), rayo.NodeAffinity(node, false)).Remote(),
			newBox.Options(rayo.Name(tag+"-keeper"), rayo.Detached(), rayo.NodeAffinity(node, false)).Remote())
	case "call":
		b, err := rayo.GetActor[Box](ctx, args[0])
		if err != nil {
			return err
		}
		boxes = append(boxes, b)
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	for _, b := range boxes {
		w, err := rayo.Get(ctx, where.Remote(b))
		if err != nil {
			return err
		}
		fmt.Println("at=" + w)
	}
	fmt.Println("ready=1")
	if mode == "hang" || mode == "pinned" || mode == "keep" {
		<-ctx.Done() // killed before
	}
	return nil
}
