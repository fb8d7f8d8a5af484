// Pinned release values for the genai-fleet AMIs. Bump deliberately, in one commit, and rebuild.
ami_version = "0.1.0"

// Source AMIs (owner amazon). The newest image that matches is used; the Version tag and
// the manifest record which one it was.
cuda_source_ami_name   = "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *"
neuron_source_ami_name = "Deep Learning AMI Neuron (Ubuntu 22.04) *"

// CUDA flavour backends.
comfyui_version = "v0.3.76"
a1111_version   = "v1.10.1"
torch_version   = "2.5.1"
torch_index_url = "https://download.pytorch.org/whl/cu124"

// Neuron flavour: the agent's diffusers / optimum-neuron backend. The diffusers extra brings the Stable
// Diffusion pipelines (diffusers 0.28-0.30.3); 0.0.28's neuronx extra pins neuronx-cc 2.15.143 and
// torch-neuronx 2.1.2 (Neuron SDK 2.20), while neuron_source_ami_name takes the newest Neuron DLAMI:
// pin that pattern to an SDK 2.20 image, or move optimum-neuron to the release of the DLAMI's SDK.
neuron_pip_packages = ["optimum-neuron[neuronx,diffusers]==0.0.28"]
