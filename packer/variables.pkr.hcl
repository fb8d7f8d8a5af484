// Shared variables for every genai-fleet AMI flavour. Release-specific values (source AMI name
// patterns, pinned versions) live in release.auto.pkrvars.hcl; the build driver
// (tools/ami_build.py) passes region, git_revision and agent paths on the command line.
//
// Packer and plugin versions: plugins.pkr.hcl.

variable "region" {
  type        = string
  description = "AWS region to build the AMI in (the only value a user must choose)."
  validation {
    condition     = can(regex("^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]+$", var.region))
    error_message = "The region must be an AWS region name such as us-east-1."
  }
}

variable "ami_version" {
  type        = string
  description = "Version of the genai-fleet AMI release, recorded in the Version tag."
  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.ami_version))
    error_message = "The ami_version must be a semantic version such as 0.1.0."
  }
}

variable "git_revision" {
  type        = string
  description = "Full git commit of this repository that the agent wheel was built from (GitRevision tag)."
  validation {
    condition     = can(regex("^[0-9a-f]{40}$", var.git_revision))
    error_message = "The git_revision must be a full 40-character lowercase git commit hash."
  }
}

variable "agent_dist_dir" {
  type        = string
  description = "Directory holding the agent wheel that tools/ami_build.py builds (relative to packer/ or absolute)."
  default     = "../build/agent"
}

variable "cuda_source_ami_name" {
  type        = string
  description = "Name pattern of the AWS Deep Learning Base GPU AMI (Ubuntu 22.04) the CUDA AMI starts from."
}

variable "neuron_source_ami_name" {
  type        = string
  description = "Name pattern of the AWS Deep Learning AMI Neuron (Ubuntu 22.04) the Neuron AMI starts from."
}

variable "cuda_build_instance_type" {
  type        = string
  description = "Instance type that builds the CUDA AMI (needs an NVIDIA GPU so nvidia-smi can be verified)."
  default     = "g5.xlarge"
  validation {
    condition     = contains(["g4dn", "g5", "g6", "g6e", "p4d", "p5"], split(".", var.cuda_build_instance_type)[0])
    error_message = "The cuda_build_instance_type must be an NVIDIA GPU type (g4dn, g5, g6, g6e, p4d, p5)."
  }
}

variable "neuron_build_instance_type" {
  type        = string
  description = "Instance type that builds the Neuron AMI (needs a Neuron device so neuron-ls can be verified)."
  default     = "inf2.xlarge"
  validation {
    condition     = contains(["inf2", "trn1", "trn1n", "trn2"], split(".", var.neuron_build_instance_type)[0])
    error_message = "The neuron_build_instance_type must be an Inferentia2 or Trainium type (inf2, trn1, trn1n, trn2)."
  }
}

variable "root_volume_size_gb" {
  type        = number
  description = "Size of the encrypted gp3 root volume in GiB (the DLAMIs need at least 100)."
  default     = 150
  validation {
    condition     = var.root_volume_size_gb >= 100 && var.root_volume_size_gb <= 2000
    error_message = "The root_volume_size_gb must be from 100 to 2000."
  }
}

variable "kms_key_id" {
  type        = string
  description = "KMS key (id, ARN or alias) that encrypts the root volume and AMI snapshot; empty uses the account's default EBS key."
  default     = ""
}

variable "subnet_id" {
  type        = string
  description = "Subnet for the build instance; empty lets the builder use the default VPC."
  default     = ""
}

variable "ssh_interface" {
  type        = string
  description = "How Packer reaches the build instance: public_ip, private_ip or session_manager."
  default     = "public_ip"
  validation {
    condition     = contains(["public_ip", "private_ip", "public_dns", "private_dns", "session_manager"], var.ssh_interface)
    error_message = "The ssh_interface must be public_ip, private_ip, public_dns, private_dns or session_manager."
  }
}

variable "agent_python" {
  type        = string
  description = "Python interpreter (from apt) that runs the worker agent's virtual environment; the runtime needs >= 3.11."
  default     = "python3.11"
  validation {
    condition     = contains(["python3.11", "python3.12"], var.agent_python)
    error_message = "The agent_python must be python3.11 or python3.12."
  }
}

variable "comfyui_version" {
  type        = string
  description = "ComfyUI release tag installed on the CUDA AMI."
  validation {
    condition     = can(regex("^v[0-9]+\\.[0-9]+\\.[0-9]+$", var.comfyui_version))
    error_message = "The comfyui_version must be a release tag such as v0.3.64."
  }
}

variable "comfyui_custom_nodes" {
  type = list(object({
    name       = string
    repository = string
    commit     = string
  }))
  description = "Custom node packs installed into ComfyUI on the CUDA AMI: custom_nodes/<name> from a git repository at a full commit id."
  default     = []
  validation {
    condition     = alltrue([for p in var.comfyui_custom_nodes : can(regex("^[0-9a-f]{40}$", p.commit))])
    error_message = "Each comfyui_custom_nodes entry's commit must be a full 40-hex-digit commit id (a tag or branch can move)."
  }
  validation {
    condition     = alltrue([for p in var.comfyui_custom_nodes : can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]*$", p.name))])
    error_message = "Each comfyui_custom_nodes entry's name must be a folder name: letters, digits, '.', '_', '-'."
  }
  validation {
    condition     = alltrue([for p in var.comfyui_custom_nodes : can(regex("^(https://|file://|/)", p.repository))])
    error_message = "Each comfyui_custom_nodes entry's repository must be an https:// URL (or a local path / file:// URL for tests)."
  }
  validation {
    condition     = length(distinct([for p in var.comfyui_custom_nodes : p.name])) == length(var.comfyui_custom_nodes)
    error_message = "The comfyui_custom_nodes names must be unique: each is a folder under custom_nodes/."
  }
}

variable "install_a1111" {
  type        = bool
  description = "Also install the AUTOMATIC1111 WebUI (API only, 127.0.0.1:7860) on the CUDA AMI."
  default     = false
}

variable "a1111_version" {
  type        = string
  description = "AUTOMATIC1111 stable-diffusion-webui release tag (used when install_a1111 is true)."
  validation {
    condition     = can(regex("^v[0-9]+\\.[0-9]+\\.[0-9]+$", var.a1111_version))
    error_message = "The a1111_version must be a release tag such as v1.10.1."
  }
}

variable "a1111_stable_diffusion_repo" {
  type        = string
  description = "Git repository A1111's launch.py clones as Stable Diffusion (its STABLE_DIFFUSION_REPO)."
  validation {
    condition     = can(regex("^https://[^ ]+\\.git$", var.a1111_stable_diffusion_repo))
    error_message = "The a1111_stable_diffusion_repo must be an https git URL ending in .git."
  }
}

variable "a1111_stable_diffusion_commit" {
  type        = string
  description = "Commit of a1111_stable_diffusion_repo that launch.py checks out (its STABLE_DIFFUSION_COMMIT_HASH)."
  validation {
    condition     = can(regex("^[0-9a-f]{40}$", var.a1111_stable_diffusion_commit))
    error_message = "The a1111_stable_diffusion_commit must be a full 40-character lowercase commit hash."
  }
}

variable "a1111_stable_diffusion_xl_repo" {
  type        = string
  description = "Git repository A1111's launch.py clones as Stable Diffusion XL (its STABLE_DIFFUSION_XL_REPO)."
  validation {
    condition     = can(regex("^https://[^ ]+\\.git$", var.a1111_stable_diffusion_xl_repo))
    error_message = "The a1111_stable_diffusion_xl_repo must be an https git URL ending in .git."
  }
}

variable "a1111_stable_diffusion_xl_commit" {
  type        = string
  description = "Commit of a1111_stable_diffusion_xl_repo that launch.py checks out (its STABLE_DIFFUSION_XL_COMMIT_HASH)."
  validation {
    condition     = can(regex("^[0-9a-f]{40}$", var.a1111_stable_diffusion_xl_commit))
    error_message = "The a1111_stable_diffusion_xl_commit must be a full 40-character lowercase commit hash."
  }
}

variable "torch_version" {
  type        = string
  description = "PyTorch version installed into the ComfyUI / A1111 environments on the CUDA AMI."
}

variable "torch_index_url" {
  type        = string
  description = "PyTorch wheel index matching the DLAMI's CUDA version, e.g. https://download.pytorch.org/whl/cu124."
  validation {
    condition     = can(regex("^https://", var.torch_index_url))
    error_message = "The torch_index_url must be an https URL."
  }
}

variable "cuda_agent_pip_packages" {
  type        = list(string)
  description = "Pinned pip requirements for the agent's diffusers backend on the CUDA AMI (pyproject's diffusers group)."
  validation {
    condition     = length(var.cuda_agent_pip_packages) > 0 && alltrue([for p in var.cuda_agent_pip_packages : length(split("==", p)) == 2])
    error_message = "Every cuda_agent_pip_packages entry must pin an exact version with ==."
  }
}

variable "cuda_agent_pip_index_url" {
  type        = string
  description = "Extra pip index for the agent's CUDA torch wheel, e.g. https://download.pytorch.org/whl/cu128."
  validation {
    condition     = can(regex("^https://", var.cuda_agent_pip_index_url))
    error_message = "The cuda_agent_pip_index_url must be an https URL."
  }
}

variable "neuron_pip_packages" {
  type        = list(string)
  description = "Pinned pip requirements for the agent's Neuron backend (optimum-neuron and friends)."
  validation {
    condition     = length(var.neuron_pip_packages) > 0 && alltrue([for p in var.neuron_pip_packages : length(split("==", p)) == 2])
    error_message = "Every neuron_pip_packages entry must pin an exact version with ==."
  }
}

variable "neuron_pip_index_url" {
  type        = string
  description = "Extra pip index holding the Neuron wheels (torch-neuronx, neuronx-cc)."
  default     = "https://pip.repos.neuron.amazonaws.com"
  validation {
    condition     = can(regex("^https://", var.neuron_pip_index_url))
    error_message = "The neuron_pip_index_url must be an https URL."
  }
}

variable "cloudwatch_agent_version" {
  type        = string
  description = "CloudWatch agent package version to install, or latest (the package signature is always verified)."
  default     = "latest"
  validation {
    condition     = var.cloudwatch_agent_version == "latest" || can(regex("^[0-9]+\\.[0-9]+\\.[0-9a-z]+$", var.cloudwatch_agent_version))
    error_message = "The cloudwatch_agent_version must be latest or a version such as 1.300049.1b929."
  }
}

variable "cloudwatch_agent_key_fingerprint" {
  type        = string
  description = "Fingerprint of the Amazon CloudWatch agent package signing key (from the AWS documentation)."
  default     = "937616F3450B7D806CBD9725D58167303B789C72"
  validation {
    condition     = can(regex("^[0-9A-F]{40}$", var.cloudwatch_agent_key_fingerprint))
    error_message = "The cloudwatch_agent_key_fingerprint must be 40 uppercase hex digits without spaces."
  }
}

variable "ami_users" {
  type        = list(string)
  description = "Account ids allowed to launch the AMI besides the owner (empty keeps it private)."
  default     = []
  validation {
    condition     = alltrue([for a in var.ami_users : can(regex("^[0-9]{12}$", a))])
    error_message = "Every ami_users entry must be a 12-digit AWS account id."
  }
}

variable "tags" {
  type        = map(string)
  description = "Extra tags for the AMI, its snapshots and the build resources (the genai-fleet tags win on conflict)."
  default     = {}
}
