// Submits the sign-out form to the identity provider as soon as the page
// loads. A form POST keeps the ID token out of URLs, browser history and
// proxy logs; the button stays for browsers without JavaScript.
document.addEventListener("DOMContentLoaded", function () {
  var form = document.querySelector("form[data-autosubmit]");
  if (form) {
    form.submit();
  }
});
