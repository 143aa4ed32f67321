'use strict';
// Never loaded by require('http') (core modules win); re-export core for completeness.
module.exports = require('node:http');
