variable "name" {
  description = "Prefix of every resource's name."
  type        = string
  default     = "rafter"
}

variable "region" {
  description = "AWS region."
  type        = string
}

variable "vpc_id" {
  description = "VPC the nodes run in."
  type        = string
}

variable "subnet_ids" {
  description = "Three subnets of vpc_id, each in a different availability zone; node i runs in subnet_ids[i]."
  type        = list(string)
  validation {
    condition     = length(var.subnet_ids) == 3
    error_message = "Give exactly three subnets, one per availability zone."
  }
}

variable "ami_id" {
  description = "A Debian 12 (or other systemd, apt-based) AMI."
  type        = string
}

variable "instance_type" {
  description = "Instance type; see docs/operations.md for sizing."
  type        = string
  default     = "c7g.large"
}

variable "package_url" {
  description = "HTTPS URL of the rafter .deb built by `make package` for the AMI's architecture."
  type        = string
}

variable "admin_cidr" {
  description = "CIDR allowed to reach the admin API (port admin_port) besides the nodes themselves."
  type        = string
}

variable "client_cidrs" {
  description = "CIDRs allowed to reach the data-plane listener ports."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "listener_ports" {
  description = "Data-plane ports the listeners in your manifest use."
  type        = list(number)
  default     = [80, 443]
}

variable "admin_port" {
  type    = number
  default = 7700
}

variable "raft_port" {
  type    = number
  default = 7701
}

variable "tls_ca_pem" {
  description = "ca.pem from `rafter tls init` (run with the ENIs' private IPs from a first plan, or names)."
  type        = string
  sensitive   = true
}

variable "tls_nodes" {
  description = "Per node id (n1, n2, n3): its certificate and key from `rafter tls init`."
  type        = map(object({ cert = string, key = string }))
  sensitive   = true
}

variable "admin_token" {
  description = "Read-write bearer token of the admin API."
  type        = string
  sensitive   = true
}
