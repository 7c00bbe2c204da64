.PHONY: setup test demo bench

setup:        ## build (or reuse) the venv + real ComfyUI v0.3.75 test environment
	tools/setup_env.sh

test:         ## the whole suite against the real ComfyUI (builds the environment if needed)
	tools/run_tests.sh

demo:         ## the bundled tiny model makes a 256-frame FIFO video through a headless ComfyUI (./output)
	tools/demo.sh

bench:        ## speed and memory benchmarks (see README, Performance)
	tools/run_benchmarks.sh
