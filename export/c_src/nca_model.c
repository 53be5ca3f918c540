/* The model's constants (nca_model.h, generated) compiled once, behind one accessor. */
#include "nca_model.h"

const nca_model_t *nca_get_model(void) { return &NCA_MODEL; }
