.PHONY: setup test test-fast demo bench

setup:        ## build (or reuse) a venv + real ComfyUI test environment (FIFO_COMFYUI=0.33.0 or 0.3.75; default the newest)
	tools/setup_env.sh

test:         ## the whole suite against a real ComfyUI (FIFO_COMFYUI picks the host; builds the environment if needed)
	tools/run_tests.sh

test-fast:    ## the unit and in-process host tests but the fixture-size FIFO samplings (no server, browser or distributed runs)
	tools/run_tests.sh -m "(unit or host) and not slow"

demo:         ## the bundled tiny model makes a 256-frame FIFO video through a headless ComfyUI (./output)
	tools/demo.sh

bench:        ## speed and memory benchmarks (see README, Performance)
	tools/run_benchmarks.sh
