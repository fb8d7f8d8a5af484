// Pinned release values for the genai-fleet AMIs. Bump deliberately, in one commit, and rebuild.
ami_version = "0.1.0"

// Source AMIs (owner amazon). The newest image that matches is used; the Version tag and
// the manifest record which one it was.
cuda_source_ami_name = "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *"
// The Neuron image is pinned to a Neuron SDK 2.20 release (the SDK optimum-neuron 0.0.28 is built for; the
// Neuron DLAMI guide names this image for SDK 2.20): a newer DLAMI brings a runtime the pinned compiler
// and torch-neuronx do not match. Move both together.
neuron_source_ami_name = "Deep Learning AMI Neuron (Ubuntu 22.04) 20241027"

// CUDA flavour backends. ComfyUI is pinned to the release the adapter was checked against: the recorded
// /object_info fixture (tests/fixtures/comfyui/object_info_video.json) and the by-hand contract run are from
// 0.3.64. Move it only with new evidence: docs/amis.md "Moving the ComfyUI pin".
comfyui_version = "v0.3.64"
a1111_version   = "v1.10.1"
// What A1111's launch.py clones at build time, pinned here and passed to it as its own variables. v1.10.1
// clones github.com/Stability-AI/stablediffusion, which no longer exists (A1111 issues #17204, #17205): its
// dev branch moved to the fork below at the same commit (A1111 pull request #17207). The XL repository is
// pinned the same way, at the commit v1.10.1 names.
a1111_stable_diffusion_repo      = "https://github.com/w-e-w/stablediffusion.git"
a1111_stable_diffusion_commit    = "f16630a927e00098b524d687640719e4eb469b76"
a1111_stable_diffusion_xl_repo   = "https://github.com/Stability-AI/generative-models.git"
a1111_stable_diffusion_xl_commit = "45c443b316737a4ab6e40413d7794a7f5657c19f"

torch_version   = "2.5.1"
torch_index_url = "https://download.pytorch.org/whl/cu124"

// The agent's diffusers backend (its own venv; pyproject's `diffusers` group, which needs torch >= 2.6, so
// not ComfyUI's torch above). torch 2.11 is what the H100 benchmark in the README ran (cu130 there; cu128
// wheels run on the DLAMI's 570+ drivers). tests/unit/test_packer.py keeps these equal to the group's pins.
cuda_agent_pip_packages  = ["torch==2.11.0", "diffusers==0.42.1", "transformers==5.23.0", "accelerate==1.15.0", "safetensors==0.8.0", "peft==0.21.2"]
cuda_agent_pip_index_url = "https://download.pytorch.org/whl/cu128"

// Neuron flavour: the agent's diffusers / optimum-neuron backend. The diffusers extra brings the Stable
// Diffusion pipelines (diffusers 0.28-0.30.3); 0.0.28's neuronx extra pins neuronx-cc 2.15.143 and
// torch-neuronx 2.1.2 (Neuron SDK 2.20), matching neuron_source_ami_name above.
neuron_pip_packages = ["optimum-neuron[neuronx,diffusers]==0.0.28"]
