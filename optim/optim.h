// Everything in ember::optim: optimizers, learning-rate schedulers, gradient clipping, weight EMA and
// the weight-decay parameter groups (these two take an nn::Module: optim/ may include nn/, not the reverse).
#pragma once

#include "optim/adam.h"
#include "optim/grad_scaler.h"
#include "optim/clip_grad.h"
#include "optim/ema.h"
#include "optim/lr_scheduler.h"
#include "optim/optimizer.h"
#include "optim/param_groups.h"
#include "optim/sgd.h"
