// Every autograd op, one header per op family (forward and backward side by
// side in the matching .cpp). To add an op: write autograd/ops/<family>.cpp
// with its kernels in cpu/<family>.cpp and cuda/<family>.cu, and include
// its header here.
#pragma once
#include "autograd/ops/activation.h"
#include "autograd/ops/attention.h"
#include "autograd/ops/cross_entropy.h"
#include "autograd/ops/dropout.h"
#include "autograd/ops/elementwise.h"
#include "autograd/ops/embedding.h"
#include "autograd/ops/matmul.h"
#include "autograd/ops/norm.h"
#include "autograd/ops/reduce.h"
#include "autograd/ops/rotary.h"
#include "autograd/ops/shape.h"
#include "autograd/ops/softmax.h"
#include "autograd/tape.h"
#include "autograd/var.h"
