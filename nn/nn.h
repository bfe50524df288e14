// The one header for ember's neural-network library: modules and layers (nn::Linear, nn::Conv2d,
// ...), the stateless ops they are built from (nn::functional), initialisers (nn::init) and
// safetensors checkpoints.
#pragma once

#include "core/ember.h"
#include "nn/checkpoint.h"
#include "nn/functional.h"
#include "nn/init.h"
#include "nn/layers.h"
#include "nn/module.h"
